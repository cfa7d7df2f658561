import { promises as fsp, constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { resolveInRoot } from '../store/safe-path';
import { writeXattrs } from '../store/xattrs';
import { xattrBytes } from './api/entry-xattrs';
import type { FileEntryMessage } from './api/messages';

/** Most entries one build may send, so a hostile client cannot fill the inode table. */
export const MAX_ENTRIES = 1_000_000;
/** Most bytes one build may send across all locals. */
export const MAX_TOTAL_BYTES = 256 * 1024 ** 3;

interface OpenFile {
  handle: FileHandle;
  target: string;
  entry: FileEntryMessage;
  written: number;
}

/**
 * Writes the locals a client streams into `<sessionDir>/<local>`, one message at a time.
 *
 * Lifecycle: `prepare()` once, then `entry()`/`data()` in stream order, then `finish()` once;
 * `abort()` closes an open file after a failure (the caller removes the session dir).
 *
 * Safety: paths are already shape-checked by zod (relative, no `..`); here every parent must be
 * a real directory that this stream created (never a symlink: a path that resolves elsewhere
 * inside the root is refused), and files and links are created exclusively (O_EXCL), so
 * nothing written ever follows a link the client made. Extended attributes (user.* and
 * security.capability only, zod refuses the rest, trusted.* above all) are set without
 * following a link, after the owner and before the mode.
 */
export class LocalsReceiver {
  private readonly roots = new Map<string, string>();
  private current: OpenFile | undefined;
  private entries = 0;
  private totalBytes = 0;
  /** directory modes and times are applied last: a 0555 dir must still receive its children */
  private readonly dirs: Array<{ target: string; entry: Omit<FileEntryMessage, 'xattrs'> }> = [];
  private readonly chown = typeof process.getuid === 'function' && process.getuid() === 0;
  /** content received per local, for the progress line */
  readonly received = new Map<string, { files: number; bytes: number }>();

  constructor(sessionDir: string, localNames: readonly string[]) {
    for (const name of localNames) this.roots.set(name, path.join(sessionDir, name));
  }

  /** The directory of each local, for BuildRequest.locals. */
  localDirs(): Record<string, string> {
    return Object.fromEntries(this.roots);
  }

  async prepare(): Promise<void> {
    for (const dir of this.roots.values()) await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  }

  async entry(e: FileEntryMessage): Promise<void> {
    await this.closeCurrent();
    if (++this.entries > MAX_ENTRIES) throw refuse(e, `more than ${MAX_ENTRIES} entries`);
    const root = this.roots.get(e.local);
    if (root === undefined) throw refuse(e, `local "${e.local}" was not declared in the start message`);
    const target = path.join(root, ...e.path.split('/'));
    await this.checkParent(root, e);
    // attributes are written to disk too: they count against the same budget as content
    this.totalBytes += xattrBytes(Object.entries(e.xattrs));
    switch (e.type) {
      case 'DIR': {
        await fsp.mkdir(target, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
          throw refuse(e, err.code === 'EEXIST' ? 'sent twice' : err.message);
        });
        // set now, not with the mode: a million directories must not hold their attributes in memory
        await this.applyXattrs(target, e);
        const { xattrs: _set, ...meta } = e;
        this.dirs.push({ target, entry: meta });
        return;
      }
      case 'SYMLINK':
        await fsp.symlink(e.link_target, target).catch((err: NodeJS.ErrnoException) => {
          throw refuse(e, err.code === 'EEXIST' ? 'sent twice' : err.message);
        });
        await this.applyOwner(target, e);
        await this.applyXattrs(target, e);
        await fsp.lutimes(target, seconds(e.mtime_ms), seconds(e.mtime_ms));
        return;
      case 'FILE': {
        this.totalBytes += e.size;
        if (this.totalBytes > MAX_TOTAL_BYTES) throw refuse(e, `the locals exceed ${MAX_TOTAL_BYTES} bytes`);
        // O_EXCL|O_CREAT never follows a symlink at the final component; O_NOFOLLOW says so twice.
        const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
        const handle = await fsp.open(target, flags, 0o600).catch((err: NodeJS.ErrnoException) => {
          throw refuse(e, err.code === 'EEXIST' ? 'sent twice' : err.message);
        });
        this.current = { handle, target, entry: e, written: 0 };
        const r = this.received.get(e.local) ?? { files: 0, bytes: 0 };
        r.files++;
        r.bytes += e.size;
        this.received.set(e.local, r);
        if (e.size === 0) await this.closeCurrent();
        return;
      }
    }
  }

  async data(chunk: Buffer): Promise<void> {
    const cur = this.current;
    if (!cur) throw new BuildError('invalid-argument', 'Cannot receive locals: file data without a file entry before it');
    if (cur.written + chunk.length > cur.entry.size) throw refuse(cur.entry, `more data than its size ${cur.entry.size}`);
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await cur.handle.write(chunk, off, chunk.length - off);
      off += bytesWritten;
    }
    cur.written += chunk.length;
    if (cur.written === cur.entry.size) await this.closeCurrent();
  }

  /** Checks the last file is complete and applies directory modes and times, deepest first. */
  async finish(): Promise<void> {
    await this.closeCurrent();
    for (const { target, entry } of [...this.dirs].reverse()) {
      await this.applyOwner(target, entry);
      await fsp.chmod(target, entry.mode);
      await fsp.utimes(target, seconds(entry.mtime_ms), seconds(entry.mtime_ms));
    }
  }

  /** Closes the file being received (it must be whole): another kind of message follows. */
  async settle(): Promise<void> {
    await this.closeCurrent();
  }

  hasOpenFile(): boolean {
    return this.current !== undefined;
  }

  /** Releases the open file, if any, after a failure. */
  async abort(): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    await cur?.handle.close().catch(() => undefined);
  }

  private async closeCurrent(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    try {
      if (cur.written !== cur.entry.size) {
        throw refuse(cur.entry, `got ${cur.written} of its ${cur.entry.size} bytes before the next message`);
      }
      if (this.chown) await cur.handle.chown(cur.entry.uid, cur.entry.gid);
      // after the chown (it drops security.capability) and the content (a write drops it too),
      // before the chmod (a daemon that is not root may set user.* only on a file it may write)
      await this.applyXattrs(cur.target, cur.entry);
      await cur.handle.chmod(cur.entry.mode);
      await cur.handle.utimes(seconds(cur.entry.mtime_ms), seconds(cur.entry.mtime_ms));
    } finally {
      await cur.handle.close();
    }
  }

  /**
   * The parent must resolve, inside the root, to exactly the path written: anything else means
   * a symlink on the way. And it must be a directory already received.
   */
  private async checkParent(root: string, e: FileEntryMessage): Promise<void> {
    const parentRel = path.posix.dirname(e.path);
    if (parentRel === '.') return;
    const expected = path.join(root, ...parentRel.split('/'));
    let resolved: string;
    try {
      resolved = await resolveInRoot(root, parentRel);
    } catch (err) {
      throw refuse(e, (err as Error).message);
    }
    if (resolved !== expected) throw refuse(e, 'its parent is a symlink');
    const st = await fsp.lstat(expected).catch(() => undefined);
    if (!st?.isDirectory()) throw refuse(e, 'its parent directory was not sent before it');
  }

  private async applyOwner(target: string, e: Omit<FileEntryMessage, 'xattrs'>): Promise<void> {
    if (this.chown) await fsp.lchown(target, e.uid, e.gid);
  }

  /**
   * The entry's extended attributes, names already checked by zod (never trusted.*), without
   * following a symlink. As BuildKit's receiver, an attribute the file system or kernel
   * refuses (user.* on a symlink, a file system without user.*) is left out; a refused
   * security.capability fails the build rather than silently dropping a privilege.
   */
  private async applyXattrs(target: string, e: FileEntryMessage): Promise<void> {
    const names = Object.keys(e.xattrs);
    if (names.length === 0) return;
    const xattrs = new Map(names.sort(compareBytes).map((n) => [n, e.xattrs[n] as Buffer]));
    await writeXattrs(target, xattrs, { fail: (name, reason) => refuse(e, `its extended attribute ${name} cannot be set: ${reason}`) });
  }
}

/**
 * utimes takes seconds as a double: ms/1000 is stored as …x.4999999 s and reads back one
 * millisecond early. Half a microsecond more lands on the intended millisecond.
 */
function seconds(ms: number): number {
  return ms / 1000 + 5e-7;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function refuse(e: Pick<FileEntryMessage, 'local' | 'path'>, why: string): BuildError {
  return new BuildError('invalid-argument', `Cannot receive ${e.local}/${e.path}: ${why}`);
}
