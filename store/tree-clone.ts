import { execFile } from 'node:child_process';
import { constants, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../solver/build-error';
import { BoundedTasks } from './bounded-tasks';
import { readXattrs, writeXattrs } from './xattrs';

const execFileP = promisify(execFile);

/** How many files a clone copies at once: enough to keep a disk busy, few enough for open-file limits. */
const DEFAULT_CONCURRENCY = 8;

/** Options of {@link cloneTree} and {@link cloneEntry}. */
export interface CloneOptions {
  /** checked before each entry; an aborted clone leaves a partial copy for the caller to delete */
  signal?: AbortSignal;
  /** files copied at once (default 8) */
  concurrency?: number;
  /**
   * Hard links: source `dev:ino` → the first destination path of that inode. Pass one map to
   * several calls that make one tree, so links between their entries stay links.
   */
  links?: Map<string, Promise<string>>;
  /** extended attributes not to copy (besides trusted.overlay.*, which writeXattrs never writes) */
  skipXattr?: (name: string) => boolean;
}

/**
 * Copies the tree at `src` (a directory, a file, anything) to `dest`, which must not exist,
 * keeping everything a layer records: type (symlinks not followed, device nodes and fifos
 * made again, sockets left out as in a tar), owner, mode (setuid bits included), times, every
 * extended attribute (overlay's trusted.overlay.* excepted, see writeXattrs) and hard links
 * inside the copy. File data goes through copyFile with FICLONE: a reflink where the file
 * system has them (btrfs, xfs), else the kernel's copy_file_range. Directories are walked one
 * at a time, while up to `concurrency` files copy meanwhile; directories' times are set last.
 */
export async function cloneEntry(src: string, dest: string, opts: CloneOptions = {}): Promise<void> {
  const clone = new Clone(opts);
  try {
    await clone.entry(src, dest, await fsp.lstat(src));
  } finally {
    // a failed walk still waits for the copies in flight: the caller deletes the partial copy next
    await clone.settle();
  }
  await clone.finish();
}

class Clone {
  private readonly tasks: BoundedTasks;
  private readonly dirTimes: Array<[string, Stats]> = [];
  private readonly links: Map<string, Promise<string>>;

  constructor(private readonly opts: CloneOptions) {
    this.tasks = new BoundedTasks(Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY));
    this.links = opts.links ?? new Map();
  }

  async entry(src: string, dest: string, st: Stats): Promise<void> {
    this.opts.signal?.throwIfAborted();
    if (!st.isDirectory()) return this.tasks.run(() => copyNonDir(src, dest, st, this.links, this.opts.skipXattr));
    await fsp.mkdir(dest);
    await applyMeta(src, dest, st, this.opts.skipXattr);
    this.dirTimes.push([dest, st]);
    for (const name of await fsp.readdir(src)) {
      const child = path.join(src, name);
      await this.entry(child, path.join(dest, name), await fsp.lstat(child));
    }
  }

  async settle(): Promise<void> {
    await this.tasks.settle();
  }

  /** Waits for every copy, then sets directory times (children change their parent's mtime). */
  async finish(): Promise<void> {
    await this.tasks.drain();
    for (const [dir, st] of this.dirTimes.reverse()) await fsp.utimes(dir, st.atime, st.mtime);
  }
}

async function copyNonDir(src: string, dest: string, st: Stats, links: Map<string, Promise<string>>, skipXattr: SkipXattr): Promise<void> {
  const key = `${st.dev}:${st.ino}`;
  if (st.nlink > 1) {
    const first = links.get(key);
    if (first !== undefined) {
      await fsp.link(await first, dest);
      return;
    }
    const made = make(src, dest, st, skipXattr).then(() => dest);
    links.set(key, made);
    await made;
    return;
  }
  await make(src, dest, st, skipXattr);
}

type SkipXattr = ((name: string) => boolean) | undefined;

async function make(src: string, dest: string, st: Stats, skipXattr: SkipXattr): Promise<void> {
  if (st.isFile()) {
    // EXCL: never write through something already at dest
    await fsp.copyFile(src, dest, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  } else if (st.isSymbolicLink()) {
    await fsp.symlink(await fsp.readlink(src), dest);
  } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
    await makeNode(dest, st);
  } else {
    return; // a socket: no tar can hold one, Docker leaves them out as well
  }
  await applyMeta(src, dest, st, skipXattr);
}

/** mknod(1) for a fifo or a device node like `st`'s; a refusal names the node. */
export async function makeNode(dest: string, st: Pick<Stats, 'rdev' | 'isFIFO' | 'isCharacterDevice'>): Promise<void> {
  const kind = st.isFIFO() ? ['p'] : [st.isCharacterDevice() ? 'c' : 'b', String(devMajor(st.rdev)), String(devMinor(st.rdev))];
  try {
    await execFileP('mknod', [dest, ...kind]);
  } catch (err) {
    const stderr = ((err as { stderr?: string }).stderr ?? String(err)).trim();
    throw new BuildError('failed-precondition', `Cannot create ${st.isFIFO() ? 'fifo' : 'device node'} ${dest}: ${stderr}`, { cause: err });
  }
}

/** Owner, then attributes (chown drops security.capability), then mode (chown clears setuid), then times. */
async function applyMeta(src: string, dest: string, st: Stats, skipXattr: SkipXattr): Promise<void> {
  await fsp.lchown(dest, st.uid, st.gid);
  const xattrs = await readXattrs(src, skipXattr ? (n) => !skipXattr(n) : undefined);
  if (xattrs.size > 0) await writeXattrs(dest, xattrs);
  if (st.isSymbolicLink()) {
    await fsp.lutimes(dest, st.atime, st.mtime);
    return;
  }
  await fsp.chmod(dest, st.mode & 0o7777);
  if (!st.isDirectory()) await fsp.utimes(dest, st.atime, st.mtime);
}

function devMajor(dev: number): number {
  return ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
}

function devMinor(dev: number): number {
  return (dev & 0xff) | ((dev >> 12) & 0xfff00);
}
