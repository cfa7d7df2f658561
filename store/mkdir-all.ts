import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { resolveInRoot } from './safe-path';

/** Who a created directory belongs to. */
export interface DirOwner {
  uid: number;
  gid: number;
}

/**
 * Creates the directory `target` (a host path inside `root`, usually from resolveInRoot)
 * and each missing parent, as BuildKit's MkdirAllAndChown: every directory it creates gets
 * `mode` (under a fixed umask 022, as the reference daemon runs, so this process's umask
 * never decides what lands in a layer) and `owner`; an existing directory is left exactly
 * as it is. Each parent is resolved inside `root` again, so a symlink an earlier step left
 * is followed inside `root` and never onto the host. A non-directory in the way is a
 * failed-precondition error. Used by COPY (0755, --chown owner), ADD's archive unpacking
 * (0755, 0:0) and a RUN's working directory (0755, the step's user).
 */
export async function mkdirAll(root: string, target: string, mode: number, owner: DirOwner): Promise<void> {
  const st = await statOrUndefined(target);
  if (st?.isDirectory()) return;
  if (st) throw new BuildError('failed-precondition', `Cannot create directory /${path.relative(root, target)}: a file is in the way`);
  if (target === root) return;
  const parent = await resolveInRoot(root, path.relative(root, path.dirname(target)));
  await mkdirAll(root, parent, mode, owner);
  await makeDir(path.join(parent, path.basename(target)), mode, owner);
}

/**
 * Creates the one directory `p` (its parent must exist) with `mode` (umask 022) and
 * `owner`; when a directory is already there (a concurrent creator) it is left alone.
 */
export async function makeDir(p: string, mode: number, owner: DirOwner): Promise<void> {
  try {
    await fsp.mkdir(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await fsp.lstat(p)).isDirectory()) return;
    throw err;
  }
  // Owner first: chown clears setuid/setgid bits the mode may carry.
  await fsp.lchown(p, owner.uid, owner.gid);
  await fsp.chmod(p, mode & 0o7777 & ~0o022);
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}
