import { execFile } from 'node:child_process';
import { constants, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../solver/build-error';
import type { FileMode } from './file-mode';
import type { PathPatterns } from './path-pattern';
import { walkSelected } from './copy-selection';
import { lstatOrUndefined } from './path-exists';
import { copyXattrs } from './xattrs';

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
  /** checked before each entry: an aborted copy stops there, leaving what it copied for its caller to discard */
  signal?: AbortSignal;
}

/**
 * Copies entries without ever following a symlink inside the source tree or the destination
 * tree: each destination path is a real directory (checked with lstat) joined with one name.
 * Lifecycle: one per copy action (it remembers hard links across that action's sources);
 * `copyChildren` and `copyEntry` may be called several times, then it is dropped.
 *
 * Which entries are taken is decided by walkSelected (copy-selection.ts), the walk COPY's
 * cache key uses too: a directory passed on the way to an included entry is created with
 * its source's mode and the owner (an existing one only takes the source's mode).
 */
export class TreeCopier {
  /** source dev:ino of files with several links → the first destination path copied */
  private readonly links = new Map<string, string>();
  private readonly dirTimes: Array<[string, Stats]> = [];

  constructor(private readonly opts: TreeCopierOptions) {}

  /** Copies what `srcDir` holds into the existing directory `destDir`, filters applied. */
  async copyChildren(srcDir: string, destDir: string): Promise<void> {
    await this.copySelected(srcDir, destDir);
    // Every directory's children are in place only now: set the directories' times last.
    for (const [dir, st] of this.dirTimes.splice(0).reverse()) await fsp.utimes(dir, st.atime, st.mtime);
  }

  /** Copies one entry (a whole tree for a directory) to `dest`, no filters on the entry itself. */
  async copyEntry(src: string, dest: string, st: Stats): Promise<void> {
    this.opts.signal?.throwIfAborted();
    if (st.isDirectory()) {
      await this.copyDir(src, dest, st);
      await this.copyChildren(src, dest);
      return;
    }
    await this.copyNonDir(src, dest, st);
  }

  private async copySelected(srcDir: string, destDir: string): Promise<void> {
    const filter = { include: this.opts.include, exclude: this.opts.exclude };
    for await (const entry of walkSelected(srcDir, filter, this.opts.signal)) {
      const dest = path.join(destDir, ...entry.rel.split('/'));
      if (entry.passThrough) await this.createPassThrough(entry.hostPath, dest, entry.stat);
      else if (entry.stat.isDirectory()) await this.copyDir(entry.hostPath, dest, entry.stat);
      else await this.copyNonDir(entry.hostPath, dest, entry.stat);
    }
  }

  private async createPassThrough(src: string, dest: string, st: Stats): Promise<void> {
    const existing = await lstatOrUndefined(dest);
    if (existing && !existing.isDirectory()) {
      throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${dest} exists and is not a directory`);
    }
    if (existing) {
      await fsp.chmod(dest, st.mode & 0o7777);
      return;
    }
    await fsp.mkdir(dest);
    await this.applyMeta(src, dest, st, true);
    this.dirTimes.push([dest, st]);
  }

  /** Creates (or takes over) the directory itself; its entries come from the walk. */
  private async copyDir(src: string, dest: string, st: Stats): Promise<void> {
    let existing = await lstatOrUndefined(dest);
    if (existing && !existing.isDirectory() && this.opts.replaceConflicts) {
      await fsp.rm(dest, { force: true });
      existing = undefined;
    }
    if (existing && !existing.isDirectory()) {
      throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${dest} exists and is not a directory`);
    }
    if (!existing) await fsp.mkdir(dest);
    await this.applyMeta(src, dest, st, true);
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
    await this.applyMeta(src, dest, st, false);
  }

  /**
   * Owner, extended attributes, mode and times of `src` onto `dest`. Attributes are copied as
   * BuildKit's copier (fsutil) does, all of them (overlayfs' own excepted), and after the
   * chown, which would drop security.capability: a capability survives COPY --chown.
   */
  private async applyMeta(src: string, dest: string, st: Stats, isDir: boolean): Promise<void> {
    const owner = this.opts.owner ?? { uid: st.uid, gid: st.gid };
    await fsp.lchown(dest, owner.uid, owner.gid);
    await copyXattrs(src, dest);
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
