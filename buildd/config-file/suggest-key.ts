import { distance } from '../../frontend/suggest';

/**
 * The known key an unknown one was most likely meant to be, for "did you mean" in config
 * errors. Case, `-` and `_` are ignored first, since `maxParallelism`, `max_parallelism` and
 * `max-parallelism` are one key spelt in three conventions; then the closest key by edit
 * distance (Damerau's transpositions count as one edit, as typing mistakes do) wins when it is
 * within about a third of the key's length, at most 3 edits: further away, a suggestion is
 * more often wrong than helpful. Undefined when nothing is that close.
 */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const wanted = normalize(key);
  const same = known.find((k) => normalize(k) === wanted);
  if (same !== undefined) return same;
  const limit = Math.max(1, Math.min(3, Math.floor(wanted.length / 3)));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const k of known) {
    // the distance is at least the difference in length
    if (Math.abs(normalize(k).length - wanted.length) > limit) continue;
    const d = distance(wanted, normalize(k));
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function normalize(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, '');
}
