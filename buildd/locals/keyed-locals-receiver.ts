import { createHash } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { xattrBytes } from '../api/entry-xattrs';
import type { FileEntryMessage } from '../api/messages';
import { MAX_REQUEST_PATHS } from '../api/server-messages';
import { removeTree } from '../remove-tree';
import { defaultFileDigestCache, type FileDigestCache } from '../../store/file-digest-cache';
import { FileThreadError, sharedFileThread, type FileThread } from '../../store/file-thread';
import { defaultKeptListings, type KeptListings } from '../../store/kept-listings';
import type { PlannedEntry } from './generation-builder';
import { publishNextGeneration } from './next-generation';
import { receivedDir } from './received-files';
import { WriteWindow } from '../../store/write-window';
import type { FileRequestMessage, LocalTransfer } from './transfer-types';
import type { LocalState, OpenFile } from './keyed-local-state';
import { compareEntry, utimeSeconds } from './listing-index';
import type { LocalsStore } from './locals-store';

/** Most entries one build may list, so a hostile client cannot fill the inode table. */
export const MAX_KEYED_ENTRIES = 1_000_000;
/** Most bytes the listed files of one build may hold. */
export const MAX_KEYED_BYTES = 256 * 1024 ** 3;

const STAGE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

/** Staged files whose writes and close may still be under way while the stream goes on. */
export const STAGE_CONCURRENCY = 32;
/** Files received whole that may wait on the file thread, and their bytes: memory stays bounded. */
export const STAGE_AHEAD_FILES = 1024;
export const STAGE_AHEAD_BYTES = 16 * 1024 * 1024;

/**
 * Receives the locals a client sends incrementally (BuildStart.local_keys): the listing, from
 * which it asks for the files whose content may differ from the kept copy; the answers, staged
 * in a temp dir; then a new generation (or the kept one, when nothing changed).
 *
 * Lifecycle: `begin()` once (takes the keys' sync locks and leases their current generations),
 * then `listed`/`listingDone`/`file`/`data` in stream order, then `finish()` (publishes, releases
 * the locks); `release()` once the build ends (leases), `abort()` after a failure (temp dirs).
 *
 * Safety: the listing is checked in memory before anything touches the disk: no path twice,
 * each parent a directory listed before it (never a symlink), the limits; content is taken
 * only for a path that was asked for, once, and exactly its listed size. Everything is written
 * below a temp dir the daemon made, files O_EXCL, so nothing follows a link the client made.
 */
export class KeyedLocalsReceiver {
  private readonly locals = new Map<string, LocalState>();
  private current: OpenFile | undefined;
  /** files received whole whose disk work is still in flight (at most STAGE_CONCURRENCY) */
  private readonly inFlight = new Set<Promise<void>>();
  /** files received whole and queued on the file thread, oldest first */
  private readonly staging = new WriteWindow(STAGE_AHEAD_FILES, STAGE_AHEAD_BYTES);
  private failure: { err: unknown } | undefined;
  private unlock: (() => void) | undefined;
  private entries = 0;
  private bytes = 0;

  constructor(
    private readonly maybeStore: LocalsStore | undefined,
    keys: Record<string, string>,
    private readonly request: (msg: FileRequestMessage) => Promise<void>,
    private readonly signal: AbortSignal,
    private readonly chown: boolean,
    /** the digests of received files go here, for the first COPY's checksum */
    private readonly digests: FileDigestCache = defaultFileDigestCache,
    private readonly files: FileThread = sharedFileThread(),
    /** the listings of published trees go here, for checksums without a walk */
    private readonly listings: KeptListings = defaultKeptListings,
  ) {
    for (const [local, key] of Object.entries(keys)) {
      this.locals.set(local, {
        key,
        entries: [],
        seen: new Set(),
        dirs: new Set(),
        waiting: new Map(),
        batch: [],
        listingDone: false,
        madeDirs: new Set(),
        same: true,
        transfer: { local, filesReceived: 0, bytesReceived: 0, reused: false, linked: 0, copied: 0 },
      });
    }
  }

  private get store(): LocalsStore {
    if (!this.maybeStore) throw new BuildError('internal', 'Cannot sync a keyed local: no store of kept locals');
    return this.maybeStore;
  }

  handles(local: string): boolean {
    return this.locals.has(local);
  }

  hasOpenFile(): boolean {
    return this.current !== undefined;
  }

  async begin(): Promise<void> {
    if (this.locals.size === 0) return;
    this.unlock = await this.store.lock([...this.locals.values()].map((l) => l.key), this.signal);
    for (const st of this.locals.values()) {
      const lease = this.store.lease(st.key);
      if (!lease) continue;
      try {
        st.kept = { ...lease, index: await this.store.index(lease.generation) };
      } catch {
        // an index that cannot be read is not trusted: this sync starts from nothing
        lease.release();
      }
    }
  }

  /**
   * Entries of listings, in order: as many entry() calls, with one wait for the writes under
   * way (a listing's 20,000 entries cost more in promises than in checks).
   */
  async listed(list: readonly FileEntryMessage[]): Promise<void> {
    await this.settle();
    for (const e of list) {
      const full = this.add(e);
      if (full) await this.flush(e.local, full, false);
    }
  }

  /** Takes one listed entry; answers its local when a request is full and must be sent. */
  private add(e: FileEntryMessage): LocalState | undefined {
    const st = this.local(e);
    if (st.listingDone) throw refuse(e, 'listed after the listing of its local was done');
    if (++this.entries > MAX_KEYED_ENTRIES) throw refuse(e, `more than ${MAX_KEYED_ENTRIES} entries`);
    this.bytes += e.size + xattrBytes(Object.entries(e.xattrs));
    if (this.bytes > MAX_KEYED_BYTES) throw refuse(e, `the locals exceed ${MAX_KEYED_BYTES} bytes`);
    if (st.seen.has(e.path)) throw refuse(e, 'sent twice');
    const parent = path.posix.dirname(e.path);
    if (parent !== '.' && !st.dirs.has(parent)) {
      throw refuse(e, st.seen.has(parent) ? 'its parent is a symlink or a file' : 'its parent directory was not sent before it');
    }
    st.seen.add(e.path);
    if (e.type === 'DIR') st.dirs.add(e.path);
    const { local: _local, ...entry } = e;
    const change = compareEntry(st.kept?.index.get(e.path), entry);
    if (change !== 'same') st.same = false;
    const planned: PlannedEntry = { entry, change };
    st.entries.push(planned);
    if (e.type === 'FILE' && e.size > 0 && change === 'content') {
      st.waiting.set(e.path, planned);
      st.batch.push(e.path);
      if (st.batch.length >= MAX_REQUEST_PATHS) return st;
    }
    return undefined;
  }

  async listingDone(local: string): Promise<void> {
    await this.settle();
    const st = this.locals.get(local);
    if (!st) throw new BuildError('invalid-argument', `Cannot receive the listing of ${local}: it has no key in the start message`);
    if (st.listingDone) throw new BuildError('invalid-argument', `Cannot receive the listing of ${local}: it was done already`);
    st.listingDone = true;
    // a local the kept copy holds entry for entry needs nothing: no requests, no file operations
    if (st.kept && st.same && st.entries.length === st.kept.index.size) st.transfer.reused = true;
    await this.flush(local, st, true);
  }

  async file(local: string, rel: string): Promise<void> {
    await this.settle();
    const st = this.locals.get(local);
    const where = { local, path: rel };
    if (!st) throw refuse(where, `local "${local}" has no key in the start message`);
    const planned = st.waiting.get(rel);
    if (!planned) throw refuse(where, st.seen.has(rel) ? 'its content was not requested, or was sent already' : 'not in the listing');
    st.waiting.delete(rel);
    st.tmp ??= await this.store.tempDir(st.key);
    // Received in place, in the new generation's tree: a flat staging dir of 20,000 names and
    // a rename per file cost more than the writes (the tree's directories are made here as
    // they are needed, each a listed DIR; links are only made once everything has arrived, so
    // nothing on the way can be one).
    planned.staged = path.join(receivedDir(st.tmp, st.madeDirs, path.posix.dirname(rel)), path.posix.basename(rel));
    this.current = { local, planned, written: 0 };
  }

  async data(chunk: Buffer): Promise<void> {
    const cur = this.current;
    if (!cur) throw new BuildError('invalid-argument', 'Cannot receive locals: file data without a file entry before it');
    const size = cur.planned.entry.size;
    if (cur.written + chunk.length > size) throw refuse({ local: cur.local, path: cur.planned.entry.path }, `more data than its size ${size}`);
    const t = (this.locals.get(cur.local) as LocalState).transfer;
    if (cur.chain === undefined && cur.written === 0 && chunk.length === size) {
      // Most files of a source tree come in one message: created and written on the file
      // thread, in batches, while this thread goes on decoding the stream.
      await this.stageWhole(cur, chunk);
      cur.planned.digest = createHash('sha256').update(chunk).digest('hex');
      cur.written = size;
      t.bytesReceived += size;
      await this.settle();
      return;
    }
    cur.chain ??= this.openStaged(cur);
    cur.hash ??= createHash('sha256');
    cur.hash.update(chunk);
    cur.chain = cur.chain.then(async (fh) => {
      try {
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      } catch (err) {
        // the chain rejects from here on: nobody else holds the handle to close it
        await fh.close().catch(() => undefined);
        throw err;
      }
      return fh;
    });
    cur.chain.catch(() => undefined);
    cur.written += chunk.length;
    if (cur.written === size) cur.planned.digest = cur.hash.digest('hex');
    // a file of more than one chunk is written at the pace of the disk: memory holds one chunk of it
    if (cur.written < size) await cur.chain;
    t.bytesReceived += chunk.length;
    if (cur.written === size) await this.settle();
  }

  /**
   * Checks that every listing is done and every requested file arrived whole, then makes each
   * local's directory: the kept generation when nothing changed, else a new one, published.
   */
  async finish(): Promise<LocalTransfer[]> {
    await this.settle();
    await this.drain();
    try {
      for (const [local, st] of this.locals) {
        if (!st.listingDone) throw new BuildError('invalid-argument', `Cannot receive ${local}: the client sent locals_done before the listing of ${local} was done`);
        const missing = st.waiting.keys().next();
        if (!missing.done) throw refuse({ local, path: missing.value }, 'the client never sent its requested content');
      }
      for (const st of this.locals.values()) await this.complete(st);
    } finally {
      this.unlock?.();
      this.unlock = undefined;
    }
    return [...this.locals.values()].map((st) => st.transfer);
  }

  /** The directory of each local, for BuildRequest.locals (after `finish`). */
  localDirs(): Record<string, string> {
    return Object.fromEntries([...this.locals].map(([local, st]) => [local, st.dir as string]));
  }

  /** After a failure: closes the open file and removes the temp dirs; the locks go too. */
  async abort(): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    await cur?.chain?.then((fh) => fh.close()).catch(() => undefined);
    await Promise.allSettled([...this.inFlight, ...this.staging.takeAll()]);
    for (const st of this.locals.values()) {
      if (st.tmp !== undefined) await removeTree(st.tmp).catch(() => undefined);
      st.tmp = undefined;
    }
    this.unlock?.();
    this.unlock = undefined;
  }

  /** Once the build has ended: the generations it used may go. */
  release(): void {
    for (const st of this.locals.values()) {
      st.kept?.release();
      st.kept = undefined;
    }
  }

  private async complete(st: LocalState): Promise<void> {
    if (st.transfer.reused && st.kept) {
      st.dir = st.kept.generation.tree;
      return;
    }
    st.tmp ??= await this.store.tempDir(st.key);
    const next = await publishNextGeneration(
      { store: this.store, listings: this.listings, digests: this.digests, chown: this.chown, signal: this.signal },
      { key: st.key, tmp: st.tmp, kept: st.kept, entries: st.entries, madeDirs: st.madeDirs },
    );
    st.tmp = undefined;
    st.kept?.release();
    st.kept = { generation: next.generation, index: new Map(), release: next.release };
    st.dir = next.generation.tree;
    st.transfer.linked = next.stats.linked;
    st.transfer.copied = next.stats.copied;
    // the listing is on disk now; the build needs only the directory
    st.entries = [];
  }

  private async flush(local: string, st: LocalState, done: boolean): Promise<void> {
    if (st.batch.length === 0 && !done) return;
    const paths = st.batch;
    st.batch = [];
    await this.request({ local, paths, done });
  }

  private local(e: Pick<FileEntryMessage, 'local' | 'path'>): LocalState {
    const st = this.locals.get(e.local);
    if (!st) throw refuse(e, `local "${e.local}" was not declared in the start message`);
    return st;
  }

  /**
   * Ends the file being received; it must be whole. Its writes and close finish in the
   * background, at most STAGE_CONCURRENCY files at once; a failure among them fails the next call.
   */
  async settle(): Promise<void> {
    this.throwFailure();
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    const size = cur.planned.entry.size;
    if (cur.written !== size) {
      await cur.chain?.then((fh) => fh.close()).catch(() => undefined);
      throw refuse({ local: cur.local, path: cur.planned.entry.path }, `got ${cur.written} of its ${size} bytes before the next message`);
    }
    (this.locals.get(cur.local) as LocalState).transfer.filesReceived++;
    if (cur.chain === undefined) return; // written inline, closed already
    const done: Promise<void> = cur.chain
      .then(async (fh) => fh.close())
      .catch((err: NodeJS.ErrnoException) => {
        this.failure ??= { err: refuse({ local: cur.local, path: cur.planned.entry.path }, `cannot be staged: ${err.code ?? err.message}`) };
      })
      .finally(() => this.inFlight.delete(done));
    this.inFlight.add(done);
    if (this.inFlight.size >= STAGE_CONCURRENCY) await Promise.race(this.inFlight);
  }

  /** Opens the staged file of `cur` (O_EXCL, never through a link); a failure is thrown where the chain is awaited. */
  private openStaged(cur: OpenFile): Promise<FileHandle> {
    const chain = fsp.open(cur.planned.staged as string, STAGE_FLAGS, 0o600);
    chain.catch(() => undefined);
    return chain;
  }

  /**
   * Hands the whole content of `cur` to the file thread (see `data`); waits only while more
   * than STAGE_AHEAD_FILES files or STAGE_AHEAD_BYTES bytes are queued there. A failure fails the
   * next call.
   */
  private async stageWhole(cur: OpenFile, content: Buffer): Promise<void> {
    const where = { local: cur.local, path: cur.planned.entry.path };
    const e = cur.planned.entry;
    // as root, and without attributes (which go after the owner), the file thread finishes the file
    const meta = this.chown && Object.keys(e.xattrs).length === 0 ? { uid: e.uid, gid: e.gid, mode: e.mode, time: utimeSeconds(e.mtime_ms) } : undefined;
    cur.planned.metaSet = meta !== undefined;
    const done = this.files.write(cur.planned.staged as string, content, meta).catch((err: unknown) => {
      this.failure ??= { err: refuse(where, `cannot be staged: ${err instanceof FileThreadError ? err.code : String(err)}`) };
    });
    await this.staging.add(done, content.length);
  }

  private async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight, ...this.staging.takeAll()]);
    this.throwFailure();
  }

  private throwFailure(): void {
    if (this.failure) throw this.failure.err;
  }
}

function refuse(e: Pick<FileEntryMessage, 'local' | 'path'>, why: string): BuildError {
  return new BuildError('invalid-argument', `Cannot receive ${e.local}/${e.path}: ${why}`);
}
