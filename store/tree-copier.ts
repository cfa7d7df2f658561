import { chmodSync, constants, copyFileSync, lchownSync, promises as fsp, utimesSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { BoundedTasks } from './bounded-tasks';
import { FileThreadError, sharedFileThread, type FileThread } from './file-thread';
import { WriteWindow } from './write-window';
import type { FileMode } from './file-mode';
import type { PathPatterns } from './path-pattern';
import { walkSelected } from './copy-selection';
import { lstatOrUndefined } from './path-exists';
import { makeNode } from './tree-clone';
import { isWhiteout } from './overlay-whiteout';
import { listAttributesSync } from '@napi-rs/xattr';
import { copyXattrs, isOverlayXattr, readXattrsSync, writeXattrs, type Xattrs } from './xattrs';

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
  /** files copied at once (default 16): each file is a few thread-pool calls, mostly waiting on the kernel */
  concurrency?: number;
  /**
   * The source's files never change (a kept local's tree) and the destination is a plain
   * directory on the same file system (a snapshot's upper dir, not an overlay mount): a
   * regular file that would come out with its source's exact metadata (owner already the
   * copy's owner, no chmod) is hard-linked instead of copied, so it costs no new inode and no
   * data. A later step changes it only through overlayfs, which copies it up first.
   */
  linkFiles?: boolean;
  /**
   * The source is one overlay upper dir whose paths no other layer has: its whiteouts (0:0
   * character devices) hide nothing and are not part of what the merged view shows, so they
   * are left out.
   */
  skipWhiteouts?: boolean;
  /** the directory that is the image's `/`: errors name destination paths below it as the image sees them, never the daemon's own */
  destRoot?: string;
}

/** Enough to keep the thread pool (16 threads at least, see uv-threadpool.ts) busy. */
const DEFAULT_CONCURRENCY = 16;
/** Links that may wait on the file thread: a batch or two ahead of the walk. */
const LINKS_AHEAD = 512;
/** Files up to this size are copied inline (see copyFileInline); a larger one would block the event loop. */
const INLINE_FILE_MAX = 256 * 1024;

/**
 * Copies entries without ever following a symlink inside the source tree or the destination
 * tree: each destination path is a real directory (checked with lstat) joined with one name.
 * Lifecycle: one per copy action (it remembers hard links across that action's sources);
 * `copyChildren` and `copyEntry` may be called several times, then `finish` once (or
 * `settle` on an error path, before the caller discards the destination). {@link TreeCopier.copy}
 * does all of that around one callback.
 *
 * Directories are created in walk order, before anything below them; files, symlinks and
 * nodes are copied up to `concurrency` at a time meanwhile, so a tree of small files costs
 * the kernel's time rather than one thread-pool round trip after another. Two entries for
 * the same destination (two sources of one COPY) are still written in order.
 *
 * Which entries are taken is decided by walkSelected (copy-selection.ts), the walk COPY's
 * cache key uses too: a directory passed on the way to an included entry is created with
 * its source's mode and the owner (an existing one only takes the source's mode).
 */
export class TreeCopier {
  /** source dev:ino of files with several links → the first destination path copied */
  private readonly links = new Map<string, Promise<string>>();
  private readonly dirTimes: Array<[string, Stats]> = [];
  private readonly tasks: BoundedTasks;
  /** destination → its copy in flight, so a later entry for the same path waits for it */
  private readonly inflight = new Map<string, Promise<void>>();
  /** links queued on the file thread */
  private readonly linking = new WriteWindow(LINKS_AHEAD, Number.POSITIVE_INFINITY);

  constructor(
    private readonly opts: TreeCopierOptions,
    private readonly files: FileThread = sharedFileThread(),
  ) {
    this.tasks = new BoundedTasks(opts.concurrency ?? DEFAULT_CONCURRENCY);
  }

  /** Runs `work` with a new copier, then finishes it; on a failure, waits for the copies in flight first. */
  static async copy(opts: TreeCopierOptions, work: (copier: TreeCopier) => Promise<void>): Promise<void> {
    const copier = new TreeCopier(opts);
    try {
      await work(copier);
    } catch (err) {
      await copier.settle();
      throw err;
    }
    await copier.finish();
  }

  /** Copies what `srcDir` holds into the existing directory `destDir`, filters applied. */
  async copyChildren(srcDir: string, destDir: string): Promise<void> {
    const filter = { include: this.opts.include, exclude: this.opts.exclude };
    for await (const entry of walkSelected(srcDir, filter, this.opts.signal)) {
      if (this.opts.skipWhiteouts && isWhiteout(entry.stat)) continue;
      const dest = path.join(destDir, ...entry.rel.split('/'));
      if (entry.passThrough) await this.createPassThrough(entry.hostPath, dest, entry.stat);
      else if (entry.stat.isDirectory()) await this.copyDir(entry.hostPath, dest, entry.stat);
      else await this.schedule(entry.hostPath, dest, entry.stat);
    }
  }

  /** Copies one entry (a whole tree for a directory) to `dest`, no filters on the entry itself. */
  async copyEntry(src: string, dest: string, st: Stats): Promise<void> {
    this.opts.signal?.throwIfAborted();
    if (this.opts.skipWhiteouts && isWhiteout(st)) return;
    if (st.isDirectory()) {
      await this.copyDir(src, dest, st);
      await this.copyChildren(src, dest);
      return;
    }
    await this.schedule(src, dest, st);
  }

  /** Waits for every copy, then sets directory times (children change their parent's mtime). */
  async finish(): Promise<void> {
    await Promise.all(this.linking.takeAll());
    await this.tasks.drain();
    // Latest first: when two sources of one COPY made the same directory, the later one's times win.
    const done = new Set<string>();
    for (const [dir, st] of this.dirTimes.splice(0).reverse()) {
      if (done.has(dir)) continue;
      done.add(dir);
      await fsp.utimes(dir, st.atime, st.mtime);
    }
  }

  /** Waits for the copies in flight, whatever their outcome (an error path, before a discard). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.linking.takeAll());
    await this.tasks.settle();
  }

  private async schedule(src: string, dest: string, st: Stats): Promise<void> {
    this.opts.signal?.throwIfAborted();
    if (this.opts.linkFiles && st.isFile() && this.keepsMetadata(st) && !this.inflight.has(dest) && this.linkable(src)) {
      await this.linkOnThread(src, dest, st);
      return;
    }
    if (st.isFile() && st.nlink === 1 && st.size <= INLINE_FILE_MAX && !this.inflight.has(dest)) {
      const inline = this.copyFileInline(src, dest, st);
      if (inline === undefined) return;
      if (inline !== 'exists') {
        // Attributes remain: written in a slot and tracked like any copy, so a later source
        // for the same path waits for it and a failure path's settle() waits for it too.
        await this.tasks.run(() =>
          this.track(dest, (async () => {
            await writeXattrs(dest, inline);
            this.finishFileSync(dest, st);
          })()),
        );
        return;
      }
    }
    await this.inflight.get(dest)?.catch(() => undefined);
    await this.tasks.run(() => this.track(dest, this.copyNonDir(src, dest, st)));
  }

  /** `dest` as the image sees it (see destRoot). */
  private shown(dest: string): string {
    const root = this.opts.destRoot;
    return root === undefined ? dest : path.posix.join('/', path.relative(root, dest));
  }

  /** Whether a copy of `st` would end with `st`'s own owner and mode (see linkFiles). */
  private keepsMetadata(st: Stats): boolean {
    const owner = this.opts.owner;
    return this.opts.chmod === undefined && (owner === null || (owner.uid === st.uid && owner.gid === st.gid));
  }

  /** Whether `src` may be linked rather than copied (see linkFiles). */
  private linkable(src: string): boolean {
    // An upper dir's file may carry overlayfs' own attributes (origin, after a move from a
    // lower layer): the copy leaves those out, a link would take them along.
    return !(this.opts.skipWhiteouts && listAttributesSync(src).some(isOverlayXattr));
  }

  /**
   * Links `src` at `dest` on the file thread (see linkFiles), while the walk goes on; the copy
   * goes the usual way when the link cannot be made: something is at `dest` (replaced the
   * careful way), another file system, or the inode has as many links as the file system
   * allows (EMLINK). At most LINKS_AHEAD links wait on the thread.
   */
  private async linkOnThread(src: string, dest: string, st: Stats): Promise<void> {
    const linking = this.files.link(src, dest).catch(async (err: unknown) => {
      const code = err instanceof FileThreadError ? err.code : undefined;
      if (code !== 'EEXIST' && code !== 'EXDEV' && code !== 'EMLINK' && code !== 'EPERM') throw err;
      await this.copyNonDir(src, dest, st);
    });
    const tracked = this.track(dest, linking);
    // settled by finish() or settle(); a failure is reported there
    tracked.catch(() => undefined);
    await this.linking.add(tracked, 0);
  }

  /** Records `copy` as the write in flight at `dest` until it settles. */
  private track(dest: string, copy: Promise<void>): Promise<void> {
    this.inflight.set(dest, copy);
    const forget = (): void => {
      if (this.inflight.get(dest) === copy) this.inflight.delete(dest);
    };
    copy.then(forget, forget);
    return copy;
  }

  /**
   * A small file with one link, copied with synchronous calls on this thread: each call is a
   * few microseconds of kernel work, and a thread-pool round trip per call cost three times
   * the CPU (20,000 files: 2.5 s against 7.9 s). A batch of the walk blocks the event loop
   * for milliseconds at most. 'exists' when something is at `dest` (nothing was written: the
   * caller replaces it the careful way); the attributes when they remain to be written (the
   * caller writes them, then mode and times, in a slot of its own).
   */
  private copyFileInline(src: string, dest: string, st: Stats): Xattrs | 'exists' | undefined {
    try {
      // EXCL: fail rather than write through a symlink at dest
      copyFileSync(src, dest, constants.COPYFILE_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
      throw err;
    }
    const owner = this.opts.owner ?? { uid: st.uid, gid: st.gid };
    lchownSync(dest, owner.uid, owner.gid);
    const xattrs = readXattrsSync(src);
    // rare: the attributes, then mode and times, the usual way (after the chown, as applyMeta)
    if (xattrs.size > 0) return xattrs;
    this.finishFileSync(dest, st);
    return undefined;
  }

  /** Mode (see applyMeta) and times of a file copied with copyFile and chowned. */
  private finishFileSync(dest: string, st: Stats): void {
    if (this.opts.chmod || (st.mode & 0o6000) !== 0) chmodSync(dest, this.opts.chmod ? this.opts.chmod.apply(st.mode, false) : st.mode & 0o7777);
    utimesSync(dest, st.atime, st.mtime);
  }

  private async createPassThrough(src: string, dest: string, st: Stats): Promise<void> {
    await this.inflight.get(dest)?.catch(() => undefined);
    const existing = await lstatOrUndefined(dest);
    if (existing && !existing.isDirectory()) {
      throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${this.shown(dest)} exists and is not a directory`);
    }
    if (existing) {
      await fsp.chmod(dest, st.mode & 0o7777);
      return;
    }
    await fsp.mkdir(dest);
    await this.applyMeta(src, dest, st, 'dir');
    this.dirTimes.push([dest, st]);
  }

  /** Creates (or takes over) the directory itself; its entries come from the walk. */
  private async copyDir(src: string, dest: string, st: Stats): Promise<void> {
    await this.inflight.get(dest)?.catch(() => undefined);
    let existing = await lstatOrUndefined(dest);
    if (existing && !existing.isDirectory() && this.opts.replaceConflicts) {
      await fsp.rm(dest, { force: true });
      existing = undefined;
    }
    if (existing && !existing.isDirectory()) {
      throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${this.shown(dest)} exists and is not a directory`);
    }
    if (!existing) await fsp.mkdir(dest);
    await this.applyMeta(src, dest, st, 'dir');
    this.dirTimes.push([dest, st]);
  }

  private async copyNonDir(src: string, dest: string, st: Stats): Promise<void> {
    if (st.nlink > 1 && !st.isSymbolicLink()) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.links.get(key);
      if (first !== undefined) {
        const target = await first;
        await this.replacing(src, dest, () => fsp.link(target, dest));
        return;
      }
      const made = this.create(src, dest, st).then(() => dest);
      this.links.set(key, made);
      await made;
      return;
    }
    await this.create(src, dest, st);
  }

  private async create(src: string, dest: string, st: Stats): Promise<void> {
    let kind: MetaKind;
    if (st.isFile()) {
      // Kernel-side copy (copy_file_range); EXCL: fail rather than write through a new symlink.
      await this.replacing(src, dest, () => fsp.copyFile(src, dest, constants.COPYFILE_EXCL));
      kind = 'file';
    } else if (st.isSymbolicLink()) {
      const target = await fsp.readlink(src);
      await this.replacing(src, dest, () => fsp.symlink(target, dest));
      kind = 'symlink';
    } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
      await this.clear(src, dest, await lstatOrUndefined(dest));
      await makeNode(dest, st);
      kind = 'node';
    } else {
      return; // sockets cannot be copied; Docker skips them as well
    }
    await this.applyMeta(src, dest, st, kind);
  }

  /**
   * Runs `make` (which fails with EEXIST when something is at `dest`); when something is in
   * the way, removes it as COPY replaces an entry and runs `make` again. Trying first saves an
   * lstat per file in the common case, a new destination.
   */
  private async replacing(src: string, dest: string, make: () => Promise<void>): Promise<void> {
    try {
      await make();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    await this.clear(src, dest, await lstatOrUndefined(dest));
    await make();
  }

  /** Removes what is at `dest` for a non-directory: a directory only under replaceConflicts. */
  private async clear(src: string, dest: string, existing: Stats | undefined): Promise<void> {
    if (!existing) return;
    if (existing.isDirectory() && !this.opts.replaceConflicts) {
      throw new BuildError('failed-precondition', `Cannot copy ${path.basename(src)}: ${this.shown(dest)} is a directory`);
    }
    // Removing first also means a symlink at dest is never followed.
    await fsp.rm(dest, { recursive: existing.isDirectory(), force: true });
  }

  /**
   * Owner, extended attributes, mode and times of `src` onto `dest`. Attributes are copied as
   * BuildKit's copier (fsutil) does, all of them (overlayfs' own excepted), and after the
   * chown, which would drop security.capability: a capability survives COPY --chown.
   */
  private async applyMeta(src: string, dest: string, st: Stats, kind: MetaKind): Promise<void> {
    const owner = this.opts.owner ?? { uid: st.uid, gid: st.gid };
    await fsp.lchown(dest, owner.uid, owner.gid);
    await copyXattrs(src, dest);
    if (kind === 'symlink') {
      await fsp.lutimes(dest, st.atime, st.mtime);
      return;
    }
    // copyFile gives a file its source's exact mode; chown then clears only setuid/setgid.
    const keepsMode = kind === 'file' && !this.opts.chmod && (st.mode & 0o6000) === 0;
    if (!keepsMode) await fsp.chmod(dest, this.opts.chmod ? this.opts.chmod.apply(st.mode, kind === 'dir') : st.mode & 0o7777);
    if (kind !== 'dir') await fsp.utimes(dest, st.atime, st.mtime);
  }
}

type MetaKind = 'dir' | 'file' | 'symlink' | 'node';
