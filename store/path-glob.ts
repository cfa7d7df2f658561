import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { resolveInRoot } from './safe-path';

/** Whether a pattern segment uses Go filepath.Match syntax (`*`, `?`, `[...]`). */
export function hasGlobMeta(s: string): boolean {
  return /[*?[]/.test(s);
}

/**
 * Expands a COPY source pattern inside `root` the way BuildKit does: Go filepath.Match per
 * path segment, directories walked inside the root (symlinks followed inside it). Returns the
 * matched paths relative to the root, `/`-separated and sorted; a pattern without meta
 * characters returns itself when it exists. An empty result is the caller's "not found".
 */
export async function expandGlob(root: string, pattern: string): Promise<string[]> {
  const segments = path.posix.normalize('/' + pattern).split('/').filter((s) => s.length > 0);
  let matches: string[][] = [[]];
  for (const segment of segments) {
    const next: string[][] = [];
    for (const prefix of matches) {
      if (!hasGlobMeta(segment)) {
        next.push([...prefix, segment]);
        continue;
      }
      const re = segmentRegExp(segment);
      const dir = await resolveInRoot(root, prefix.join('/'));
      let names: string[];
      try {
        names = await fsp.readdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        throw err;
      }
      for (const name of names.sort()) if (re.test(name)) next.push([...prefix, name]);
    }
    matches = next;
  }
  const out: string[] = [];
  for (const m of matches) {
    const p = await resolveInRoot(root, m.join('/'));
    try {
      await fsp.lstat(p);
      out.push(m.join('/'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
  }
  return out.sort();
}

/** Go's filepath.Match for one segment, as a RegExp. */
export function segmentRegExp(segment: string): RegExp {
  return new RegExp('^' + globRegExpSource(segment, { doubleStar: false }) + '$');
}

/**
 * The one translation of a glob to RegExp source, shared by COPY sources (one segment, Go
 * filepath.Match) and .dockerignore / COPY --exclude patterns (moby/patternmatcher, which adds
 * `**`): `*` and `?` never cross a `/`, `\` escapes the next character, `[...]` is a class
 * whose `^` negates — only `^`: in Go (and so in the reference builder) `[!a]` is the class
 * of `!` and `a` (conformance case c94). A malformed pattern (unclosed `[`, trailing `\`) is an error, as
 * both filepath.Match and patternmatcher.New reject it.
 *
 * With `doubleStar`, `**` matches any number of directories (a `/` right after it is part of
 * it), and at the end of the pattern anything at all; without it, `**` is two `*`.
 */
export function globRegExpSource(pattern: string, opts: { doubleStar: boolean }): string {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') {
      if (opts.doubleStar && pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++;
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= pattern.length) throw badPattern(pattern, 'it ends in a backslash');
      re += escapeRe(pattern[++i] as string);
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw badPattern(pattern, 'unterminated [');
      let cls = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
      re += `[${cls}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return re;
}

function badPattern(pattern: string, why: string): BuildError {
  return new BuildError('invalid-argument', `Cannot use pattern ${JSON.stringify(pattern)}: ${why}`);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
