import type { Stats } from 'node:fs';

/** How a {@link FileDigestCache} is bounded and what clock it trusts. */
export interface FileDigestCacheOptions {
  /** most entries kept; the least recently used go first (default {@link DEFAULT_MAX_ENTRIES}) */
  maxEntries?: number;
  /** a file born or written less than this long ago is not recorded (see record()) */
  racyWindowMs?: number;
  /** wall clock in ms, the clock file times come from (tests pass their own) */
  now?: () => number;
}

/** Cumulative counts since the cache was made. */
export interface FileDigestCacheCounters {
  hits: number;
  misses: number;
  /** digests stored after a miss */
  recorded: number;
  /** digests not stored: racy, or a file whose identity cannot be keyed */
  refused: number;
  /** entries dropped to stay within maxEntries */
  evicted: number;
}

/**
 * ~150 bytes of heap an entry (45-byte key, 32-byte digest, Map slot; measured 14.5 MiB for
 * 100,000): five times a 20,000-file context, within buildd's memory budget.
 */
export const DEFAULT_MAX_ENTRIES = 100_000;
/**
 * File times come from the kernel's coarse clock, one tick apart (4 ms at HZ=250, 10 ms at
 * HZ=100); 100 ms is ten of the longest ticks. See record(). A file is then read once more
 * than it would be otherwise only when it was written less than this before it was hashed.
 */
export const DEFAULT_RACY_WINDOW_MS = 100;

/**
 * Remembers the sha256 of a regular file's content by its metadata, so that a file whose
 * inode and metadata did not change is not read again (BuildKit's contenthash does the same
 * for its cache refs). In memory only, bounded by entry count, least recently used first out.
 *
 * Lifecycle: one per process ({@link defaultFileDigestCache}) lives as long as the daemon;
 * tests make their own. Nothing is persisted: a restart costs one cold checksum per tree (what
 * every build cost before), while a file of entries on disk would add a format, crash
 * consistency and a second thing to trust that changes with reboots (device numbers, inode
 * reuse) for a saving that comes once per restart.
 *
 * The key is (st_dev, st_ino, birth time, size, mtime, st_mode):
 * - (dev, ino, birth time) names one inode over its life. An inode number is reused once its
 *   file is deleted; the new inode's birth time (statx btime) differs from the old one's as
 *   long as the read behind the old entry began more than a clock tick after its file was
 *   born, which the racy window makes sure of (as git's "racily clean" entries). A file system
 *   without birth times (btime reads 0) keys by ctime instead: safe, but a new hardlink or a
 *   chmod then misses.
 * - ctime is not in the key: making a hardlink (nlink+1) or removing one changes it, and
 *   buildd's kept context copies hardlink every unchanged file into each build's tree, so a
 *   ctime key would never hit where the cache matters most.
 * - (size, mtime, mode) are the content's version within the inode's life, as BuildKit keys
 *   it. A write in place moves mtime to the time of the write, which differs from the key's
 *   as the racy window keeps out entries of files written shortly before their read. mtime is Node's
 *   Stats.mtimeMs, a double good to about a quarter of a microsecond: an ns key would cost a
 *   second stat of each file.
 *
 * Threat model: the trees buildd hashes are its own (committed snapshots, context copies), not
 * written while they are hashed, and new content is always written to a new inode there. The
 * one change the key cannot see is a rewrite in place of the same inode with the same size and
 * the mtime set back (utimensat): only ctime shows it, which hardlinks also change. Whoever can
 * do that can write buildd's trees and so poison its caches anyway; that is accepted. Inode
 * reuse is not accepted, as a client picks its files' size and mtime (npm gives every file one
 * fixed mtime): a build whose file lands on a freed inode number must never get the digest of
 * the file that was there, which the birth time and the racy window ensure. An inode number
 * beyond 2^53 (overlayfs' xino puts a layer index in the high bits) does not fit the double
 * Node gives and is never keyed. Device numbers of tmpfs and overlay mounts are reused after
 * an unmount; the birth time again tells their files apart. Even a file written while it is
 * read (which the model excludes) leaves no entry a later stat can match but by setting its
 * mtime back: its key holds times from before the read began, and every later write or new
 * inode carries a later time. So the reader needs no fstat after the read to check the stat.
 */
export class FileDigestCache {
  /** key → the digest's 32 bytes as a latin1 string (half the memory of hex) */
  private readonly entries = new Map<string, string>();
  private readonly maxEntries: number;
  private readonly racyWindowMs: number;
  private readonly now: () => number;
  private readonly count: FileDigestCacheCounters = { hits: 0, misses: 0, recorded: 0, refused: 0, evicted: 0 };

  constructor(options: FileDigestCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.racyWindowMs = options.racyWindowMs ?? DEFAULT_RACY_WINDOW_MS;
    this.now = options.now ?? Date.now;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 0) throw new RangeError(`Cannot make a digest cache: maxEntries ${this.maxEntries} is not a count`);
  }

  /**
   * The content digest (hex sha256) recorded for the file `st` describes, or, on a miss, a
   * function to record the digest of a read that starts now. Call lookup() just before opening
   * the file: the time of the call is what record() checks the racy window against.
   */
  lookup(st: Stats): { digest: string } | { record: (digest: string) => boolean } {
    const key = cacheKey(st);
    const digest = key === undefined ? undefined : this.entries.get(key);
    if (digest !== undefined) {
      this.count.hits++;
      // most recently used last: the Map's order is the eviction order
      this.entries.delete(key!);
      this.entries.set(key!, digest);
      return { digest: Buffer.from(digest, 'latin1').toString('hex') };
    }
    this.count.misses++;
    const readStart = this.now();
    return { record: (d) => this.record(key, st, readStart, d) };
  }

  /**
   * Refuses a file born or written within the racy window before its read began: file times
   * come from a coarse clock, so an inode freed and reused, or a file written again in place,
   * within one tick of the time in the key would get that same time. With the window, every
   * write that can leave the key's times happened before the read began (so the digest is of
   * the content every file with this key has), and a reused inode number gets a birth time
   * later than the key's. A file whose mtime is in the future is therefore never recorded.
   */
  private record(key: string | undefined, st: Stats, readStart: number, digest: string): boolean {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new RangeError(`Cannot record a file digest: ${digest} is not a hex sha256`);
    const newest = Math.max(st.birthtimeMs > 0 ? st.birthtimeMs : st.ctimeMs, st.mtimeMs);
    if (key === undefined || readStart - newest <= this.racyWindowMs) {
      this.count.refused++;
      return false;
    }
    if (this.maxEntries === 0) return false;
    this.entries.delete(key);
    this.entries.set(key, Buffer.from(digest, 'hex').toString('latin1'));
    this.count.recorded++;
    while (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value!);
      this.count.evicted++;
    }
    return true;
  }

  get size(): number {
    return this.entries.size;
  }

  counters(): FileDigestCacheCounters {
    return { ...this.count };
  }

  clear(): void {
    this.entries.clear();
  }
}

/** The process's cache, which checksumPaths uses unless told otherwise. */
export const defaultFileDigestCache = new FileDigestCache();

const KEY_BYTES = 45;
/** reused by every key: keys are made one at a time on the main thread */
const keyBuf = Buffer.alloc(KEY_BYTES);

/**
 * The key as a flat 45-character latin1 string of the fields' bytes (dev, ino, a tag and the
 * birth time or ctime, size, mtime as doubles, mode): a third of the memory of the same
 * fields written out in decimal with separators, and never a rope of concatenated strings.
 */
function cacheKey(st: Stats): string | undefined {
  if (!st.isFile() || !Number.isSafeInteger(st.ino) || !Number.isSafeInteger(st.dev)) return undefined;
  const born = st.birthtimeMs > 0;
  keyBuf.writeDoubleLE(st.dev, 0);
  keyBuf.writeDoubleLE(st.ino, 8);
  keyBuf.writeUInt8(born ? 1 : 2, 16);
  keyBuf.writeDoubleLE(born ? st.birthtimeMs : st.ctimeMs, 17);
  keyBuf.writeDoubleLE(st.size, 25);
  keyBuf.writeDoubleLE(st.mtimeMs, 33);
  keyBuf.writeUInt32LE(st.mode >>> 0, 41);
  return keyBuf.toString('latin1');
}
