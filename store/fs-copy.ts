import { execFile } from 'node:child_process';
import { constants, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../solver/build-error';
import type { Chown, CopyAction, MkdirAction } from '../solver/op';
import { expandGlob, hasGlobMeta } from './path-glob';
import { resolveUser } from './passwd';
import { cleanAbsolute, resolveInRoot } from './safe-path';

const execFileP = promisify(execFile);

interface Owner {
  uid: number;
  gid: number;
}

/**
 * Runs one COPY onto `destRoot` (a mounted snapshot) from `srcRoot`, with the semantics of
 * BuildKit's Dockerfile COPY (checked against Docker 20.10's BuildKit):
 * - each source is resolved inside `srcRoot`, symlinks followed; a glob matching nothing adds
 *   nothing (BuildKit's AllowEmptyWildcard), a plain path that is missing is not-found;
 * - a directory source copies its contents; a file goes into `dest` when `dest` ends in `/`,
 *   there are several sources or `dest` is an existing directory, else it becomes `dest`;
 * - inside a copied tree, symlinks stay symlinks, hard links stay linked, modes are kept
 *   (`--chmod` replaces them on files and directories), owner is 0:0 or `--chown`, mtimes kept;
 * - directories COPY creates (the destination and its missing parents) are 0755, owned by the
 *   `--chown` user (0:0 without), never `--chmod`ed; existing ones are left as they are.
 */
export async function copyAction(action: CopyAction, srcRoot: string, destRootIn: string): Promise<void> {
  const destRoot = path.resolve(destRootIn);
  const owner = await resolveOwner(action.chown, destRoot);
  const sources: string[] = [];
  for (const pattern of action.srcPaths) {
    const matches = await expandGlob(srcRoot, pattern);
    // BuildKit's Dockerfile COPY allows an empty wildcard; a plain path must exist, and
    // exist once followed (a symlink to a missing file is missing too).
    if (!hasGlobMeta(pattern) && (matches.length === 0 || !(await statOrUndefined(await resolveInRoot(srcRoot, matches[0]))))) {
      throw new BuildError('not-found', `Cannot copy ${JSON.stringify(pattern)}: not found in the source`);
    }
    sources.push(...matches.map(cleanAbsolute));
  }
  const dest = await resolveInRoot(destRoot, action.dest);
  const destStat = await statOrUndefined(dest);
  const intoDir = action.dest.endsWith('/') || action.srcPaths.length > 1 || destStat?.isDirectory() === true;
  const copier = new TreeCopier(owner, action.chmod);
  for (const src of sources) {
    const srcHost = await resolveInRoot(srcRoot, src);
    const st = await fsp.stat(srcHost);
    if (st.isDirectory()) {
      await mkdirAll(destRoot, dest, 0o755, owner);
      await copier.copyChildren(srcHost, dest);
    } else {
      const target = intoDir ? path.join(dest, path.posix.basename(src)) : dest;
      await mkdirAll(destRoot, path.dirname(target), 0o755, owner);
      await copier.copyEntry(srcHost, target, st);
    }
  }
}

/**
 * Runs one mkdir (WORKDIR, or an explicit file op) in `destRoot`. With `makeParents`, every
 * directory created gets `mode` and the owner, as BuildKit's MkdirAll; an existing directory
 * is left alone either way.
 */
export async function mkdirAction(action: MkdirAction, destRootIn: string): Promise<void> {
  const destRoot = path.resolve(destRootIn);
  const owner = await resolveOwner(action.chown, destRoot);
  const target = await resolveInRoot(destRoot, action.path);
  if (action.makeParents) return mkdirAll(destRoot, target, action.mode, owner);
  const parent = await statOrUndefined(path.dirname(target));
  if (!parent?.isDirectory()) throw new BuildError('not-found', `Cannot create directory ${action.path}: its parent does not exist`);
  await makeDir(target, action.mode, owner);
}

async function resolveOwner(chown: Chown | undefined, destRoot: string): Promise<Owner> {
  if (!chown) return { uid: 0, gid: 0 };
  const user = await resolveUser(destRoot, chown.group === undefined ? chown.user : `${chown.user}:${chown.group}`);
  return { uid: user.uid, gid: user.gid };
}

/** Creates `target` (a host path inside `root`) and its missing parents, each with mode and owner. */
async function mkdirAll(root: string, target: string, mode: number, owner: Owner): Promise<void> {
  const st = await statOrUndefined(target);
  if (st?.isDirectory()) return;
  if (st) throw new BuildError('failed-precondition', `Cannot create directory /${path.relative(root, target)}: a file is in the way`);
  if (target === root) return;
  // The parent may be a symlink (created by an earlier step): resolve it inside root again.
  const parent = await resolveInRoot(root, path.relative(root, path.dirname(target)));
  await mkdirAll(root, parent, mode, owner);
  await makeDir(path.join(parent, path.basename(target)), mode, owner);
}

async function makeDir(p: string, mode: number, owner: Owner): Promise<void> {
  try {
    await fsp.mkdir(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await fsp.lstat(p)).isDirectory()) return;
    throw err;
  }
  await fsp.lchown(p, owner.uid, owner.gid);
  // BuildKit's os.Mkdir runs under the daemon's umask (022); apply it explicitly so our
  // result does not depend on this process's umask.
  await fsp.chmod(p, mode & 0o7777 & ~0o022);
}

/**
 * Copies entries without ever following a symlink inside the source tree or the destination
 * tree: each destination path is a real directory (checked with lstat) joined with one name.
 */
class TreeCopier {
  /** source dev:ino of files with several links → the first destination path copied */
  private readonly links = new Map<string, string>();
  private readonly dirTimes: Array<[string, Stats]> = [];

  constructor(private readonly owner: Owner, private readonly chmod: number | undefined) {}

  async copyChildren(srcDir: string, destDir: string): Promise<void> {
    for (const name of (await fsp.readdir(srcDir)).sort()) {
      const src = path.join(srcDir, name);
      await this.copyEntry(src, path.join(destDir, name), await fsp.lstat(src));
    }
    // The top call returns last: every directory's children are in place, set its times now.
    for (const [dir, st] of this.dirTimes.splice(0).reverse()) await fsp.utimes(dir, st.atime, st.mtime);
  }

  async copyEntry(src: string, dest: string, st: Stats): Promise<void> {
    const existing = await lstatOrUndefined(dest);
    if (st.isDirectory()) {
      if (existing && !existing.isDirectory()) {
        throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${dest} exists and is not a directory`);
      }
      if (!existing) await fsp.mkdir(dest);
      await this.applyMeta(dest, st, true);
      await this.copyTree(src, dest);
      this.dirTimes.push([dest, st]);
      return;
    }
    if (existing?.isDirectory()) throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${dest} is a directory`);
    // Replace whatever is there; removing first also means a symlink at dest is never followed.
    if (existing) await fsp.rm(dest, { force: true });
    const key = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1 && !st.isSymbolicLink() ? this.links.get(key) : undefined;
    if (first !== undefined) {
      await fsp.link(first, dest);
      return;
    }
    if (st.isFile()) {
      // Kernel-side copy (copy_file_range); EXCL: fail rather than write through a new symlink.
      await fsp.copyFile(src, dest, constants.COPYFILE_EXCL);
    } else if (st.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(src), dest);
    } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
      const kind = st.isFIFO() ? ['p'] : [st.isCharacterDevice() ? 'c' : 'b', String(devMajor(st.rdev)), String(devMinor(st.rdev))];
      await execFileP('mknod', [dest, ...kind]);
    } else {
      return; // sockets cannot be copied; Docker skips them as well
    }
    if (st.nlink > 1 && !st.isSymbolicLink()) this.links.set(key, dest);
    await this.applyMeta(dest, st, false);
  }

  private async copyTree(srcDir: string, destDir: string): Promise<void> {
    for (const name of (await fsp.readdir(srcDir)).sort()) {
      const src = path.join(srcDir, name);
      await this.copyEntry(src, path.join(destDir, name), await fsp.lstat(src));
    }
  }

  private async applyMeta(dest: string, st: Stats, isDir: boolean): Promise<void> {
    await fsp.lchown(dest, this.owner.uid, this.owner.gid);
    if (st.isSymbolicLink()) {
      await fsp.lutimes(dest, st.atime, st.mtime);
      return;
    }
    // After chown, which clears setuid/setgid.
    await fsp.chmod(dest, this.chmod ?? st.mode & 0o7777);
    if (!isDir) await fsp.utimes(dest, st.atime, st.mtime);
  }
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.lstat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}

function devMajor(dev: number): number {
  return ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
}

function devMinor(dev: number): number {
  return (dev & 0xff) | ((dev >> 12) & 0xfff00);
}
