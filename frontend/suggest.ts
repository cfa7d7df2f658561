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
    // The distance is at least the difference in length: a candidate that far off cannot be
    // the answer, and measuring it costs length x length (a 160 KB token took seconds).
    if (Math.abs(w.length - c.length) > limit) continue;
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

/** Optimal string alignment distance. */
export function distance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[rows - 1][cols - 1];
}
