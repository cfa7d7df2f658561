import { listAttributesSync } from '@napi-rs/xattr';
import { createHash, type Hash } from 'node:crypto';
import { close, open, promises as fsp, read, type Stats } from 'node:fs';
import { debuglog } from 'node:util';
import { BuildError } from '../solver/build-error';
import { selectSources, walkSelected } from './copy-selection';
import { readSmallFileSync } from './read-small-file';
import { defaultFileDigestCache, type FileDigestCache } from './file-digest-cache';
import { CAPABILITY_XATTR, OVERLAY_XATTR_PREFIX, readXattrs } from './xattrs';

/** COPY flags that change which paths a copy selects. */
export interface ChecksumSelection {
  /** COPY --exclude: left out below each matched directory, relative to it */
  exclude?: string[];
  /** COPY --parents: each pattern is a pivot directory and an include pattern below it */
  parents?: boolean;
}

/** Reads one regular file to the end: its content's hex sha256. `st` is the walk's stat of it. */
export type FileDigester = (hostPath: string, st: Stats, signal?: AbortSignal) => Promise<string>;

/** How one checksumPaths call does its work; none of it changes the result. */
export interface ChecksumOptions {
  /** digests of unchanged files (default: the process's); null reads every file */
  cache?: FileDigestCache | null;
  /** entries whose file work (read, readlink, attributes) runs at once (default {@link DEFAULT_CHECKSUM_CONCURRENCY}) */
  concurrency?: number;
  /** reads a file whose digest is not cached (default {@link readFileDigest}) */
  digestFile?: FileDigester;
  /** counts of this call's work, added to the object given */
  stats?: ChecksumStats;
}

/** What one checksumPaths call did (for tests and the buildd-checksum debug log). */
export interface ChecksumStats {
  entries: number;
  files: number;
  /** files whose digest came from the cache */
  reused: number;
  /** files read */
  read: number;
  /** sizes of the files read, as the walk saw them */
  bytesRead: number;
}

/**
 * Enough to keep a 2-core machine's threadpool and disk queue busy while the walk's own lstat
 * calls go on; more only adds memory (a window of 8× this many entries waits to be hashed).
 */
export const DEFAULT_CHECKSUM_CONCURRENCY = 16;
/** files smaller than this are read in one synchronous call (see readFileDigest) */
const SYNC_READ_MAX = 64 * 1024;
/** a file is read in pieces of at most this many bytes */
const READ_CHUNK = 256 * 1024;

const debug = debuglog('buildd-checksum');

/**
 * The checksum of just what a COPY takes from a directory (BuildKit's content-based cache
 * key for file ops). The sources are chosen by selectSources and walkSelected, the very
 * functions copyAction copies through, so a change to anything copied changes the key and a
 * change to anything left out (an --exclude'd file, a path outside a --parents pattern)
 * does not. Covered: each match with its type, a matched file's permission bits and content
 * digest, and every entry copied below a matched directory with its relative path, type,
 * permission bits, link target and content digest; and, for each of these, its extended
 * attributes that BuildKit's checksum keys (isKeyedXattr), so a file whose capability alone
 * changed is copied again. Ownership and times are left out, as
 * COPY resets ownership and BuildKit ignores times; a matched directory's own mode is left
 * out, as COPY creates its destination 0755. A plain path that is missing is not-found, the
 * error COPY itself would give.
 *
 * Entries are worked on `concurrency` at once while the walk goes on, and hashed strictly in
 * walk order, so the result does not depend on which read ends first and equals what hashing
 * one entry after the other gave (test/unit/store/content-checksum-pinned.test.ts holds it).
 * A file's content digest comes from `cache` when its inode and metadata are unchanged (see
 * FileDigestCache for when that is safe), so an unchanged tree is hashed without reading it.
 * The tree must not change while it is hashed. Nothing started outlives the call, also when
 * it fails or `signal` aborts it.
 */
export async function checksumPaths(
  root: string,
  patterns: string[],
  signal?: AbortSignal,
  selection: ChecksumSelection = {},
  options: ChecksumOptions = {},
): Promise<string> {
  const hash = createHash('sha256');
  const notFound = (pattern: string): BuildError => new BuildError('not-found', `Cannot compute checksum of ${pattern}: not found in the build context`);
  const sources = await selectSources(root, { srcPaths: patterns, ...selection }, notFound);
  const stats: ChecksumStats = { entries: 0, files: 0, reused: 0, read: 0, bytesRead: 0 };
  const work: EntryWork = {
    cache: options.cache === undefined ? defaultFileDigestCache : options.cache,
    digestFile: options.digestFile ?? readFileDigest,
    stats,
  };
  const ordered = new OrderedHasher(hash, options.concurrency ?? DEFAULT_CHECKSUM_CONCURRENCY, signal);
  await ordered.run(async (push) => {
    for (const source of sources) {
      signal?.throwIfAborted();
      const parents = source.parentsInclude === undefined ? '' : ` parents ${source.parentsInclude}`;
      await push(`match ${source.pattern}${parents} ${source.path}\0`);
      if (!source.stat.isDirectory()) {
        await push((s) => entryText(source.hostPath, source.path, source.stat, work, s));
        continue;
      }
      await push(`dir ${source.path}\0`);
      for await (const entry of walkSelected(source.hostPath, source.filter, signal)) {
        await push((s) => entryText(entry.hostPath, `${source.path}/${entry.rel}`, entry.stat, work, s));
      }
    }
  });
  if (options.stats) for (const k of Object.keys(stats) as Array<keyof ChecksumStats>) options.stats[k] += stats[k];
  debug('checksum of %s %j: %d entries, %d files, %d digests reused, %d files read (%d bytes)', root, patterns, stats.entries, stats.files, stats.reused, stats.read, stats.bytesRead);
  return 'sha256:' + hash.digest('hex');
}

interface EntryWork {
  cache: FileDigestCache | null;
  digestFile: FileDigester;
  stats: ChecksumStats;
}

/**
 * What one entry adds to the checksum, as the copy writes it; `st` is the stat the copy uses
 * (followed only for a match), reused here so an entry costs no stat of its own.
 */
async function entryText(abs: string, rel: string, st: Stats, work: EntryWork, signal: AbortSignal): Promise<string> {
  work.stats.entries++;
  const perm = (st.mode & 0o7777).toString(8);
  let text: string;
  if (st.isSymbolicLink()) {
    text = `link ${rel} ${perm} ${await fsp.readlink(abs)}\0`;
  } else if (st.isDirectory()) {
    text = `dir ${rel} ${perm}\0`;
  } else if (st.isFile()) {
    text = `file ${rel} ${perm} ${st.size} ${await fileDigest(abs, st, work, signal)}\0`;
  } else {
    text = `other ${rel} ${perm} ${st.mode >>> 12} ${st.rdev}\0`;
  }
  // entries without attributes hash as before, so their keys do not change
  if (hasKeyedXattr(abs)) for (const [name, value] of await readXattrs(abs, isKeyedXattr)) text += `xattr ${rel} ${name} ${value.toString('hex')}\0`;
  return text;
}

/**
 * Whether `abs` has an attribute the key covers, listed without following a link. The list is
 * taken synchronously: one llistxattr of an inode the walk's lstat just brought into memory
 * costs a few microseconds, a threadpool round trip (the async listing) costs ten times that
 * and queues in front of the walk's own lstat calls; almost every entry has none.
 */
function hasKeyedXattr(abs: string): boolean {
  try {
    return listAttributesSync(abs).some(isKeyedXattr);
  } catch (err) {
    // the addon's errors may come from another realm (jest): no instanceof Error
    const message = typeof (err as { message?: unknown }).message === 'string' ? (err as { message: string }).message : String(err);
    throw new BuildError('internal', `Cannot read extended attributes of ${abs}: ${message}`, { cause: err });
  }
}

async function fileDigest(abs: string, st: Stats, work: EntryWork, signal: AbortSignal): Promise<string> {
  work.stats.files++;
  const cached = work.cache?.lookup(st);
  if (cached !== undefined && 'digest' in cached) {
    work.stats.reused++;
    return cached.digest;
  }
  const digest = await work.digestFile(abs, st, signal);
  work.stats.read++;
  work.stats.bytesRead += st.size;
  cached?.record(digest);
  return digest;
}

/**
 * The default FileDigester: open, read to the end, close, through the callback API (one
 * threadpool round trip each, no stream or FileHandle around them). A file that is as long as
 * `st` says ends with the read that comes back short of `st.size + 1` bytes, so a small file
 * is one read. (No fstat to check the file against `st`: see FileDigestCache on why an entry
 * stays safe without it.)
 */
export async function readFileDigest(hostPath: string, st: Stats, signal?: AbortSignal): Promise<string> {
  // A small file in three synchronous calls: microseconds of kernel work each, where a
  // thread-pool round trip per call cost several times that on this thread (20,000 files of
  // a cold COPY: see the commit). The walk gives the event loop its turns.
  // One that grew since its stat is read again to its end below, as a large one is.
  if (st.size < SYNC_READ_MAX) {
    const content = readSmallFileSync(hostPath, st.size, true);
    if (content.length <= st.size) return createHash('sha256').update(content).digest('hex');
  }
  const fd = await call<number>((cb) => open(hostPath, 'r', cb));
  try {
    const content = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.max(1, Math.min(st.size + 1, READ_CHUNK)));
    let total = 0;
    for (;;) {
      signal?.throwIfAborted();
      const want = total < st.size ? Math.min(st.size - total + 1, buf.length) : buf.length;
      const n = await call<number>((cb) => read(fd, buf, 0, want, null, cb));
      if (n === 0) break;
      content.update(buf.subarray(0, n));
      total += n;
      if (total === st.size && n < want) break;
    }
    return content.digest('hex');
  } finally {
    await call<void>((cb) => close(fd, cb));
  }
}

function call<T>(start: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))));
}

/** Text to hash now, or work that makes it (given a signal that aborts once the call fails). */
type Piece = string | ((signal: AbortSignal) => Promise<string>);

/**
 * Runs pieces' work `limit` at once and feeds their text to `hash` in the order they were
 * pushed. push() waits while 8×limit pieces are outstanding, so memory stays bounded however
 * large the tree. Lifecycle: one run() per instance; it returns (or throws) only once every
 * piece it started has settled.
 */
class OrderedHasher {
  private readonly queue: Array<Promise<string>> = [];
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private readonly failed = new AbortController();

  constructor(
    private readonly hash: Hash,
    private readonly limit: number,
    private readonly signal?: AbortSignal,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Cannot compute a checksum: concurrency ${limit} is not a positive integer`);
  }

  async run(produce: (push: (piece: Piece) => Promise<void>) => Promise<void>): Promise<void> {
    const onAbort = (): void => this.failed.abort(this.signal?.reason);
    this.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await produce((piece) => this.push(piece));
      while (this.queue.length > 0) this.hash.update(await this.queue.shift()!);
    } catch (err) {
      this.failed.abort(err);
      await Promise.allSettled(this.queue);
      throw err;
    } finally {
      this.signal?.removeEventListener('abort', onAbort);
    }
  }

  private async push(piece: Piece): Promise<void> {
    const p = typeof piece === 'string' ? Promise.resolve(piece) : this.start(piece);
    // awaited in order below; until then a failure must not count as unhandled
    p.catch(() => undefined);
    this.queue.push(p);
    while (this.queue.length > 8 * this.limit) this.hash.update(await this.queue.shift()!);
  }

  private async start(work: (signal: AbortSignal) => Promise<string>): Promise<string> {
    // first come, first served: a finished piece hands its slot to the oldest waiting one
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      this.failed.signal.throwIfAborted();
      return await work(this.failed.signal);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/**
 * The attributes a COPY's key covers, as BuildKit's content checksum (the tarsum header of
 * cache/contenthash): security.capability and every name outside security.*, system.* and
 * com.apple.* (labels, ACLs and Finder data are not content). overlayfs' own trusted.overlay.*
 * are left out too, as the copy never writes them.
 */
function isKeyedXattr(name: string): boolean {
  if (name === CAPABILITY_XATTR) return true;
  return !['security.', 'system.', 'com.apple.', OVERLAY_XATTR_PREFIX].some((p) => name.startsWith(p));
}
