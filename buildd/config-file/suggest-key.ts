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
    const d = editDistance(wanted, normalize(k));
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

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and transpositions
 * of two neighbours, each one edit (Damerau-Levenshtein without edits of a transposed pair).
 */
export function editDistance(a: string, b: string): number {
  // three rows suffice: a transposition looks two rows back
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1);
      current.push(d);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length] as number;
}
