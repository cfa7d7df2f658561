/**
 * "Did you mean ...?" for misspelt instructions, flags and options: the closest candidate by
 * Damerau-Levenshtein distance (a swap of two neighbours counts once), if it is close enough
 * to be a likely typo rather than a different word.
 */

/** The candidate nearest to `word` (case-insensitive), or undefined when none is near. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  // Two edits for long words, one for short ones: `--cp` should not become `--chmod`.
  const limit = w.length > 4 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    // the distance is at least the difference in length: a 160 kB "instruction" costs nothing
    if (Math.abs(c.length - w.length) > limit) continue;
    const d = distance(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance > 0 && bestDistance <= limit ? best : undefined;
}

/** `: did you mean X?` or '' */
export function didYouMean(word: string, candidates: readonly string[], render: (c: string) => string = (c) => c): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : `: did you mean ${render(s)}?`;
}

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and transpositions
 * of two neighbours, each one edit (Damerau-Levenshtein without edits of a transposed pair).
 */
export function distance(a: string, b: string): number {
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
