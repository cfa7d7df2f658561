import * as path from 'node:path';
import { BuildError } from '../solver/build-error';

interface Pattern {
  source: string;
  re: RegExp;
  exclusion: boolean;
}

/**
 * Patterns in .dockerignore syntax (moby/patternmatcher), as COPY --exclude and the include
 * patterns of COPY --parents use them: Go filepath.Match per segment plus `**` for any
 * number of directories, `!` to re-include, later patterns win. A path matches when it or one
 * of its parent directories matches, so excluding a directory excludes what it holds.
 * Paths are `/`-separated and relative to the root the patterns apply to.
 */
export class PathPatterns {
  private readonly patterns: Pattern[];

  constructor(patterns: string[]) {
    this.patterns = [];
    for (const raw of patterns) {
      let p = raw.trim();
      if (p.length === 0) continue;
      const exclusion = p.startsWith('!');
      if (exclusion) p = p.slice(1).trim();
      p = path.posix.normalize(p).replace(/^\/+/, '').replace(/\/+$/, '');
      if (p.length === 0 || p === '.') {
        if (exclusion) throw new BuildError('invalid-argument', `Cannot use pattern ${JSON.stringify(raw)}: an exclusion needs a path`);
        p = '**';
      }
      this.patterns.push({ source: p, re: patternRegExp(p), exclusion });
    }
  }

  /** Whether any pattern is a `!` re-inclusion (then an excluded directory must still be walked). */
  get hasExclusions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  get isEmpty(): boolean {
    return this.patterns.length === 0;
  }

  /** Whether `rel` (or a parent directory of it) is matched, after every pattern in order. */
  matches(rel: string): boolean {
    const parents = path.posix.dirname(rel).split('/');
    let matched = false;
    for (const pattern of this.patterns) {
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

/** patternmatcher's translation of one pattern to a RegExp. */
function patternRegExp(p: string): RegExp {
  let re = '^';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '*') {
      if (p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') i++;
        re += i + 1 >= p.length ? '.*' : '(.*/)?';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= p.length) throw new BuildError('invalid-argument', `Cannot use pattern ${JSON.stringify(p)}: it ends in a backslash`);
      re += escapeRe(p[++i]);
    } else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) throw new BuildError('invalid-argument', `Cannot use pattern ${JSON.stringify(p)}: unterminated [`);
      let cls = p.slice(i + 1, end).replace(/\\/g, '\\\\');
      if (cls.startsWith('!') || cls.startsWith('^')) cls = '^' + cls.slice(1);
      re += `[${cls}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(re + '$', 's');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
