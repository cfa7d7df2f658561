import { execFile } from 'node:child_process';
import { constants, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../solver/build-error';
import type { FileMode } from './file-mode';
import type { PathPatterns } from './path-pattern';
import { lstatOrUndefined } from './path-exists';

const execFileP = promisify(execFile);

/** Who copied entries belong to; `null` keeps each source entry's own uid:gid (layer merges). */
export interface Owner {
  uid: number;
  gid: number;
}

/** What a TreeCopier does to each entry it copies. */
export interface TreeCopierOptions {
  owner: Owner | null;
  chmod?: FileMode;
  /** only entries matching these (relative to the copied directory) and their parents */
  include?: PathPatterns;
  /** entries matching these (relative to the copied directory) are left out */
  exclude?: PathPatterns;
  /** layer semantics: an entry replaces whatever is in its way (a directory only merges with a directory) */
  replaceConflicts?: boolean;
}

/** A directory passed on the way to an included entry, created only when one turns up. */
interface PendingDir {
  src: string;
  dest: string;
  st: Stats;
  created: boolean;
}

/**
 * Copies entries without ever following a symlink inside the source tree or the destination
 * tree: each destination path is a real directory (checked with lstat) joined with one name.
 * Lifecycle: one per copy action (it remembers hard links across that action's sources);
 * `copyChildren` and `copyEntry` may be called several times, then it is dropped.
 *
 * Filters follow tonistiigi/fsutil's copier: an excluded file is skipped, an excluded
 * directory is skipped whole unless a `!` pattern may re-include something below it; a
 * directory that is not itself included is created only once something below it is, with
 * its source's mode and the owner (an existing one only takes the source's mode).
 */
export class TreeCopier {
  /** source dev:ino of files with several links → the first destination path copied */
  private readonly links = new Map<string, string>();
  private readonly dirTimes: Array<[string, Stats]> = [];

  constructor(private readonly opts: TreeCopierOptions) {}

  /** Copies what `srcDir` holds into the existing directory `destDir`, filters applied. */
  async copyChildren(srcDir: string, destDir: string): Promise<void> {
    await this.walk(srcDir, '', destDir, []);
    // The top call returns last: every directory's children are in place, set its times now.
    for (const [dir, st] of this.dirTimes.splice(0).reverse()) await fsp.utimes(dir, st.atime, st.mtime);
  }

  /** Copies one entry (a whole tree for a directory) to `dest`, no filters on the entry itself. */
  async copyEntry(src: string, dest: string, st: Stats): Promise<void> {
    if (st.isDirectory()) {
      await this.copyDir(src, '', dest, st);
      for (const [dir, dst] of this.dirTimes.splice(0).reverse()) await fsp.utimes(dir, dst.atime, dst.mtime);
      return;
    }
    await this.copyNonDir(src, dest, st);
  }

  private async walk(srcDir: string, rel: string, destDir: string, pending: PendingDir[]): Promise<void> {
    for (const name of (await fsp.readdir(srcDir)).sort()) {
      await this.visit(path.join(srcDir, name), rel ? `${rel}/${name}` : name, path.join(destDir, name), pending);
    }
  }

  private async visit(src: string, rel: string, dest: string, pending: PendingDir[]): Promise<void> {
    const { include, exclude } = this.opts;
    const excluded = exclude?.matches(rel) === true;
    const included = !excluded && (include === undefined || include.matches(rel));
    const mayReinclude = exclude?.hasExclusions === true;
    if (excluded && include === undefined && !mayReinclude) return;
    const st = await fsp.lstat(src);
    if (!st.isDirectory()) {
      if (!included) return;
      await this.createPending(pending);
      await this.copyNonDir(src, dest, st);
      return;
    }
    if (included) {
      await this.createPending(pending);
      await this.copyDir(src, rel, dest, st);
      return;
    }
    if (excluded && !mayReinclude) return;
    pending.push({ src, dest, st, created: false });
    try {
      await this.walk(src, rel, dest, pending);
    } finally {
      pending.pop();
    }
  }

  private async createPending(pending: PendingDir[]): Promise<void> {
    for (const dir of pending) {
      if (dir.created) continue;
      const existing = await lstatOrUndefined(dir.dest);
      if (existing && !existing.isDirectory()) {
        throw new BuildError('failed-precondition', `Cannot copy ${path.basename(dir.src)}: ${dir.dest} exists and is not a directory`);
      }
      if (existing) await fsp.chmod(dir.dest, dir.st.mode & 0o7777);
      else {
        await fsp.mkdir(dir.dest);
        await this.applyMeta(dir.dest, dir.st, true);
        this.dirTimes.push([dir.dest, dir.st]);
      }
      dir.created = true;
    }
  }

  private async copyDir(src: string, rel: string, dest: string, st: Stats): Promise<void> {
    let existing = await lstatOrUndefined(dest);
    if (existing && !existing.isDirectory() && this.opts.replaceConflicts) {
      await fsp.rm(dest, { force: true });
      existing = undefined;
    }
    if (existing && !existing.isDirectory()) {
      throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${dest} exists and is not a directory`);
    }
    if (!existing) await fsp.mkdir(dest);
    await this.applyMeta(dest, st, true);
    await this.walk(src, rel, dest, []);
    this.dirTimes.push([dest, st]);
  }

  private async copyNonDir(src: string, dest: string, st: Stats): Promise<void> {
    const existing = await lstatOrUndefined(dest);
    if (existing?.isDirectory() && this.opts.replaceConflicts) await fsp.rm(dest, { recursive: true, force: true });
    else if (existing?.isDirectory()) throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${dest} is a directory`);
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

  private async applyMeta(dest: string, st: Stats, isDir: boolean): Promise<void> {
    const owner = this.opts.owner ?? { uid: st.uid, gid: st.gid };
    await fsp.lchown(dest, owner.uid, owner.gid);
    if (st.isSymbolicLink()) {
      await fsp.lutimes(dest, st.atime, st.mtime);
      return;
    }
    // After chown, which clears setuid/setgid.
    const mode = this.opts.chmod ? this.opts.chmod.apply(st.mode, isDir) : st.mode & 0o7777;
    await fsp.chmod(dest, mode);
    if (!isDir) await fsp.utimes(dest, st.atime, st.mtime);
  }
}

function devMajor(dev: number): number {
  return ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
}

function devMinor(dev: number): number {
  return (dev & 0xff) | ((dev >> 12) & 0xfff00);
}
