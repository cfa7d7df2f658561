import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';

const MAX_LINKS = 255;

/**
 * Resolves `p` (absolute or relative, as read from a tar, a context or a Dockerfile) to a host
 * path inside `root`, following symlinks as if `root` were `/`: an absolute link target or a
 * `..` restarts from, or stops at, `root`. Nothing the result names is outside `root`.
 *
 * `followFinal: false` leaves the last component unresolved (for lstat, unlink, or creating a
 * symlink there). Components that do not exist yet are kept as written, so the result can be
 * used to create them.
 */
export async function resolveInRoot(root: string, p: string, opts: { followFinal?: boolean } = {}): Promise<string> {
  const followFinal = opts.followFinal ?? true;
  const rootAbs = path.resolve(root);
  let pending = splitPath(p);
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '.' || part === '') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const candidate = path.join(rootAbs, ...done, part);
    const isLast = pending.length === 0;
    if (isLast && !followFinal) {
      done.push(part);
      break;
    }
    let target: string | undefined;
    try {
      const st = await fsp.lstat(candidate);
      if (st.isSymbolicLink()) target = await fsp.readlink(candidate);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
    if (target === undefined) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new BuildError('invalid-argument', `Cannot resolve ${p}: too many levels of symbolic links`);
    }
    if (target.startsWith('/')) done.length = 0;
    pending = [...splitPath(target), ...pending];
  }
  return path.join(rootAbs, ...done);
}

/** Cleans a path to `/a/b` form without touching the filesystem; `..` never climbs above `/`. */
export function cleanAbsolute(p: string): string {
  return path.posix.normalize('/' + p).replace(/\/+$/, '') || '/';
}

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s.length > 0);
}
