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
  let re = '^';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < segment.length) re += escapeRe(segment[++i]);
    else if (c === '[') {
      const end = segment.indexOf(']', i + 2);
      if (end < 0) throw new BuildError('invalid-argument', `Cannot match pattern ${segment}: unterminated [`);
      let cls = segment.slice(i + 1, end);
      if (cls.startsWith('^')) cls = '!' + cls.slice(1);
      re += cls.startsWith('!') ? `[^${cls.slice(1).replace(/\\/g, '\\\\')}]` : `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(re + '$');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
