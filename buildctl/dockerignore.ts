import * as path from 'node:path';

/**
 * .dockerignore matching with BuildKit's semantics (moby/patternmatcher): patterns are cleaned
 * like Go's filepath.Clean and lose a leading '/'; `*` and `?` stay within one path component,
 * `**` spans any number of them, `[...]` is a character class, `\` escapes; a `!` line makes
 * an exception; the last pattern that matches a path decides. A pattern that matches a parent
 * directory matches everything below it.
 */
interface Pattern {
  regex: RegExp;
  exclusion: boolean;
  /** components of the cleaned pattern, to match parents with the same depth */
  depth: number;
  hasDoubleStar: boolean;
}

export class DockerIgnore {
  private readonly patterns: Pattern[];
  /** whether any `!` pattern exists: if not, an ignored directory need not be walked at all */
  readonly hasExceptions: boolean;

  constructor(lines: readonly string[]) {
    this.patterns = [];
    for (const raw of lines) {
      let line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      let exclusion = false;
      if (line.startsWith('!')) {
        exclusion = true;
        line = line.slice(1).trim();
        if (line === '') continue;
      }
      const cleaned = path.posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '') || '.';
      this.patterns.push({
        regex: toRegExp(cleaned),
        exclusion,
        depth: cleaned.split('/').length,
        hasDoubleStar: cleaned.includes('**'),
      });
    }
    this.hasExceptions = this.patterns.some((p) => p.exclusion);
  }

  static parse(text: string): DockerIgnore {
    return new DockerIgnore(text.split(/\r?\n/));
  }

  /** Whether `rel` ('/'-separated, relative to the context) is ignored. */
  ignores(rel: string): boolean {
    const parts = rel.split('/');
    let ignored = false;
    for (const p of this.patterns) {
      if (p.exclusion !== ignored) continue; // cannot change the outcome
      if (matchesOrParent(p, parts)) ignored = !p.exclusion;
    }
    return ignored;
  }
}

function matchesOrParent(p: Pattern, parts: string[]): boolean {
  if (p.regex.test(parts.join('/'))) return true;
  // A pattern matching a parent directory covers its children (patternmatcher's
  // MatchesOrParentMatches); `**` patterns may match a parent of any depth.
  if (p.hasDoubleStar) {
    for (let i = parts.length - 1; i >= 1; i--) if (p.regex.test(parts.slice(0, i).join('/'))) return true;
    return false;
  }
  return p.depth < parts.length && p.regex.test(parts.slice(0, p.depth).join('/'));
}

function toRegExp(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++; // `**/` is `**`
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '\\') {
      const next = pattern[i + 1];
      re += next === undefined ? '\\\\' : escapeChar(next);
      i++;
    } else if (ch === '[') {
      // a class: `[abc]`, `[a-z]`, `[!abc]` / `[^abc]`; an unclosed `[` is literal
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
      } else {
        let body = pattern.slice(i + 1, end);
        if (body.startsWith('!') || body.startsWith('^')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else {
      re += escapeChar(ch);
    }
  }
  return new RegExp(re + '$', 's');
}

function escapeChar(ch: string): string {
  return /[.+()|{}$^*?[\]\\]/.test(ch) ? '\\' + ch : ch;
}
