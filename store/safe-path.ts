import { lstatSync, promises as fsp, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { isMissingPath } from './path-exists';

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
  const steps = resolveSteps(root, p, opts.followFinal ?? true);
  let step = steps.next();
  while (!step.done) step = steps.next(await linkTargetAt(step.value));
  return step.value;
}

/**
 * {@link resolveInRoot} with synchronous lstat/readlink: for a loop over many entries (a layer's
 * symlinks and directories) where a thread-pool round trip per component costs far more than
 * the call itself. Same rules, same result.
 */
export function resolveInRootSync(root: string, p: string, opts: { followFinal?: boolean } = {}): string {
  const steps = resolveSteps(root, p, opts.followFinal ?? true);
  let step = steps.next();
  while (!step.done) step = steps.next(linkTargetAtSync(step.value));
  return step.value;
}

/**
 * The walk of both resolvers: yields each host path to look at and is sent back its symlink
 * target (undefined for anything else or nothing there); returns the resolved path.
 */
function* resolveSteps(root: string, p: string, followFinal: boolean): Generator<string, string, string | undefined> {
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
    const isLast = pending.length === 0;
    if (isLast && !followFinal) {
      done.push(part);
      break;
    }
    const target = yield path.join(rootAbs, ...done, part);
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

/** The symlink target at `candidate`; undefined for anything else, or for nothing there (kept as written). */
async function linkTargetAt(candidate: string): Promise<string | undefined> {
  try {
    const st = await fsp.lstat(candidate);
    return st.isSymbolicLink() ? await fsp.readlink(candidate) : undefined;
  } catch (err) {
    if (isMissingPath(err)) return undefined;
    throw err;
  }
}

/** {@link linkTargetAt}, synchronous. */
function linkTargetAtSync(candidate: string): string | undefined {
  try {
    const st = lstatSync(candidate);
    return st.isSymbolicLink() ? readlinkSync(candidate) : undefined;
  } catch (err) {
    if (isMissingPath(err)) return undefined;
    throw err;
  }
}

/** Cleans a path to `/a/b` form without touching the filesystem; `..` never climbs above `/`. */
export function cleanAbsolute(p: string): string {
  return path.posix.normalize('/' + p).replace(/\/+$/, '') || '/';
}

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s.length > 0);
}
