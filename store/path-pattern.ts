import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { globRegExpSource, segmentRegExp } from './path-glob';

interface Pattern {
  re: RegExp;
  exclusion: boolean;
  /** one matcher per segment, up to the first segment holding `**` */
  prefix: RegExp[];
}

/**
 * Patterns in .dockerignore syntax (moby/patternmatcher), the one matcher behind COPY
 * --exclude, the include patterns of COPY --parents and buildctl's .dockerignore: Go
 * filepath.Match per segment plus `**` for any number of directories, `!` to re-include,
 * later patterns win. A path matches when it or one of its parent directories matches
 * (patternmatcher's MatchesOrParentMatches), so excluding a directory excludes what it holds.
 * Paths are `/`-separated and relative to the root the patterns apply to.
 */
export class PathPatterns {
  private readonly patterns: Pattern[];

  /** Throws a BuildError for a malformed pattern, as patternmatcher.New does. */
  constructor(patterns: readonly string[]) {
    this.patterns = [];
    for (const raw of patterns) {
      let p = raw.trim();
      if (p.length === 0) continue;
      const exclusion = p.startsWith('!');
      if (exclusion) p = p.slice(1).trim();
      p = path.posix.normalize(p).replace(/^\/+/, '').replace(/\/+$/, '');
      if (p.length === 0 || p === '.') {
        if (exclusion) throw new BuildError('invalid-argument', `Cannot use pattern ${JSON.stringify(raw)}: an exclusion needs a path`);
        // an empty include (`COPY --parents dir/./`) names the whole tree below the pivot
        p = '**';
      }
      // only `!` patterns need segments; one with an escape or a class may hold a `/` that is
      // no separator (`a\/b`, `a[/]b`), so it gets none: it may re-include anywhere (conservative)
      const segments = exclusion && !/[\\[]/.test(p) ? p.split('/') : [];
      const open = segments.findIndex((seg) => seg.includes('**'));
      const prefix = (open < 0 ? segments : segments.slice(0, open)).map(segmentRegExp);
      this.patterns.push({ re: new RegExp('^' + globRegExpSource(p, { doubleStar: true }) + '$', 's'), exclusion, prefix });
    }
  }

  /** Whether any pattern is a `!` re-inclusion (then an excluded directory must still be walked). */
  get hasExclusions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  /**
   * Whether a `!` pattern may re-include something below directory `dir`: one whose leading
   * segments (up to a `**`) match dir's as far as both go. When none does, nothing below a
   * matched directory can come back and a walk need not enter it (as fsutil's walker skips an
   * excluded directory no exception pattern can reach). Conservative: true when unsure.
   */
  mayReincludeBelow(dir: string): boolean {
    const parts = dir.split('/');
    for (const pattern of this.patterns) {
      if (!pattern.exclusion) continue;
      const n = Math.min(parts.length, pattern.prefix.length);
      let agrees = true;
      for (let i = 0; i < n && agrees; i++) agrees = (pattern.prefix[i] as RegExp).test(parts[i] as string);
      if (agrees) return true;
    }
    return false;
  }

  /** Whether `rel` (or a parent directory of it) is matched, after every pattern in order. */
  matches(rel: string): boolean {
    const parents = path.posix.dirname(rel).split('/');
    let matched = false;
    for (const pattern of this.patterns) {
      // a pattern that agrees with the current outcome cannot change it
      if (pattern.exclusion !== matched) continue;
      let match = pattern.re.test(rel);
      if (!match && parents[0] !== '.') {
        for (let i = 1; i <= parents.length && !match; i++) match = pattern.re.test(parents.slice(0, i).join('/'));
      }
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }
}
