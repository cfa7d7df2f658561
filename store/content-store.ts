import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, promises as fsp, renameSync, statSync, utimesSync } from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuildError } from '../solver/build-error';
import { BoundedTasks } from './bounded-tasks';
import type { MetaDb } from './meta-db';

/** A blob's address and length. */
export interface BlobInfo {
  digest: string;
  size: number;
}

/**
 * Content-addressed blobs (layers, configs, manifests), containerd style.
 *
 * Lifecycle: a blob is written through `ingest`, which streams into `ingest/`, hashes on the
 * way, fsyncs, verifies the expected digest and size when given, and only then renames into
 * `blobs/sha256/`. A partial or wrong blob is never visible; a blob once visible never changes.
 * Blobs live until `delete` (garbage collection); readers open them by digest.
 */
export interface ContentStore {
  /** The blob's size, or undefined when absent; a blob found counts as used now (GC keeps it a while). */
  info(digest: string): Promise<BlobInfo | undefined>;
  /** A stream of the blob; throws not-found when absent. */
  read(digest: string): Promise<Readable>;
  /** The blob's path on disk, for consumers that need a file (never write to it). */
  blobPath(digest: string): string;
  ingest(source: Readable | AsyncIterable<Buffer>, expected?: Partial<BlobInfo>, signal?: AbortSignal): Promise<BlobInfo>;
  readJson(digest: string, maxBytes?: number): Promise<unknown>;
  delete(digest: string): Promise<void>;
  /**
   * For GC: deletes blob `digest` when it was last written or found (see info) before
   * `olderThanMs` and `referenced()` says false, both checked in the synchronous step that
   * takes its name away; true when it was deleted.
   */
  collect(digest: string, olderThanMs: number, referenced: () => boolean): Promise<boolean>;
  /** Every blob (for GC), with when it was last written or found present by an ingest. */
  list(): Promise<StoredBlob[]>;
}

/** Options of `LocalContentStore.open`. */
export interface ContentStoreOptions {
  /**
   * The daemon's metadata database: each blob gets a row of the blobs table (digest, size,
   * written_at), so `list` is a query. Without it (a test's, a tool's store) `list` walks the
   * directory and `written_at` is the file's mtime.
   */
  meta?: MetaDb;
}

const DIGEST_RE = /^sha256:([a-f0-9]{64})$/;

/** Parses a digest, throwing invalid-argument for anything but sha256:<64 hex>. */
export function digestHex(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m) throw new BuildError('invalid-argument', `Cannot use digest ${JSON.stringify(digest.slice(0, 100))}: not sha256:<64 hex digits>`);
  return m[1];
}

/**
 * The filesystem ContentStore under `<root>/content`. With a MetaDb, a blob's row is written
 * after its file is renamed into place and synced, and deleted before its file: a crash in
 * between leaves a file without a row, which `open` adopts (and GC then judges like any other).
 */
export class LocalContentStore implements ContentStore {
  private readonly blobsDir: string;
  private readonly ingestDir: string;

  private constructor(
    root: string,
    private readonly meta: MetaDb | undefined,
  ) {
    this.blobsDir = path.join(root, 'blobs', 'sha256');
    this.ingestDir = path.join(root, 'ingest');
  }

  static async open(root: string, opts: ContentStoreOptions = {}): Promise<LocalContentStore> {
    const store = new LocalContentStore(root, opts.meta);
    await fsp.mkdir(store.blobsDir, { recursive: true });
    // Leftovers of writes interrupted by a crash: never visible, safe to drop.
    await fsp.rm(store.ingestDir, { recursive: true, force: true });
    await fsp.mkdir(store.ingestDir, { recursive: true });
    await store.reconcile();
    return store;
  }

  /**
   * Makes the blobs table agree with the directory, once at open: a file without a row (a crash
   * between the rename and the row, a store used without the database) gets one, dated by its
   * mtime; a row without a file (deleted by hand) goes.
   */
  private async reconcile(): Promise<void> {
    const meta = this.meta;
    if (meta === undefined) return;
    const names = new Set((await fsp.readdir(this.blobsDir)).filter((n) => /^[a-f0-9]{64}$/.test(n)));
    const rows = new Set((meta.db.prepare('SELECT digest FROM blobs').all() as Array<{ digest: string }>).map((r) => r.digest));
    const adopted: StoredBlob[] = [];
    const tasks = new BoundedTasks(32);
    for (const n of names) {
      if (rows.has(`sha256:${n}`)) continue;
      await tasks.run(async () => {
        const st = await fsp.stat(path.join(this.blobsDir, n)).catch(() => undefined);
        if (st) adopted.push({ digest: `sha256:${n}`, size: st.size, writtenAtMs: st.mtimeMs });
      });
    }
    await tasks.drain();
    const gone = [...rows].filter((d) => !names.has(d.slice('sha256:'.length)));
    if (adopted.length === 0 && gone.length === 0) return;
    meta.transaction(() => {
      const insert = meta.db.prepare('INSERT OR REPLACE INTO blobs (digest, size, written_at) VALUES (?, ?, ?)');
      for (const b of adopted) insert.run(b.digest, b.size, new Date(b.writtenAtMs).toISOString());
      const del = meta.db.prepare('DELETE FROM blobs WHERE digest = ?');
      for (const d of gone) del.run(d);
    });
  }

  /** Stamps `digest` as written now: a new blob, or one an ingest found present (see ContentStore.list). */
  private stamp(digest: string, size: number): void {
    const now = new Date();
    if (this.meta !== undefined) {
      this.meta.db
        .prepare('INSERT INTO blobs (digest, size, written_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO UPDATE SET written_at = excluded.written_at')
        .run(digest, size, now.toISOString());
    } else {
      try {
        utimesSync(this.blobPath(digest), now, now);
      } catch {
        // gone meanwhile: the caller's check after the stamp sees it
      }
    }
  }

  blobPath(digest: string): string {
    return path.join(this.blobsDir, digestHex(digest));
  }

  async info(digest: string): Promise<BlobInfo | undefined> {
    let size: number;
    try {
      size = (await fsp.stat(this.blobPath(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    // Found: stamped as used now, then looked for again in the same synchronous step. GC's
    // collect checks the stamp and takes the name away in one step too: either it ran first
    // (and the blob is absent here) or this did (and GC keeps it).
    this.stamp(digest, size);
    return existsSync(this.blobPath(digest)) ? { digest, size } : undefined;
  }

  async read(digest: string): Promise<Readable> {
    const p = this.blobPath(digest);
    const handle = await fsp.open(p, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new BuildError('not-found', `Cannot read blob ${digest}: not in the content store`);
      throw err;
    });
    return handle.createReadStream();
  }

  async readJson(digest: string, maxBytes = 4 * 1024 * 1024): Promise<unknown> {
    const info = await this.info(digest);
    if (!info) throw new BuildError('not-found', `Cannot read blob ${digest}: not in the content store`);
    if (info.size > maxBytes) throw new BuildError('invalid-argument', `Cannot parse blob ${digest}: ${info.size} bytes is over the ${maxBytes} byte limit`);
    const text = await fsp.readFile(this.blobPath(digest), 'utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new BuildError('invalid-argument', `Cannot parse blob ${digest}: not JSON`);
    }
  }

  async ingest(source: Readable | AsyncIterable<Buffer>, expected: Partial<BlobInfo> = {}, signal?: AbortSignal): Promise<BlobInfo> {
    if (expected.digest) {
      digestHex(expected.digest);
      const have = await this.info(expected.digest);
      if (have) {
        // Already present: drain nothing more than needed; the caller's stream is abandoned.
        // An HTTP body (undici's) reports its destruction as an 'error' event: nobody else
        // listens to it, and unheard it would take the daemon down (two imported caches
        // fetching one layer at once did).
        if (source instanceof Readable) {
          source.on('error', () => undefined);
          source.destroy();
        }
        // info() stamped it: the caller is about to refer to it, and GC keeps it
        return have;
      }
    }
    const tmp = path.join(this.ingestDir, randomBytes(12).toString('hex'));
    const hash = createHash('sha256');
    let size = 0;
    const limit = expected.size;
    const out = createWriteStream(tmp, { flags: 'wx' });
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            size += chunk.length;
            if (limit !== undefined && size > limit) {
              throw new BuildError('invalid-argument', `Cannot store blob ${expected.digest ?? ''}: more than the expected ${limit} bytes`);
            }
            hash.update(chunk);
            yield chunk;
          }
        },
        out as Writable,
        { signal },
      );
      const digest = 'sha256:' + hash.digest('hex');
      if (expected.digest && expected.digest !== digest) {
        throw new BuildError('invalid-argument', `Cannot store blob: content has digest ${digest}, expected ${expected.digest}`);
      }
      if (limit !== undefined && size !== limit) {
        throw new BuildError('invalid-argument', `Cannot store blob ${digest}: ${size} bytes, expected ${limit}`);
      }
      const fh = await fsp.open(tmp, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, this.blobPath(digest));
      // The rename itself must survive a crash before anyone is told the blob exists.
      const dir = await fsp.open(this.blobsDir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
      this.stamp(digest, size);
      return { digest, size };
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  async delete(digest: string): Promise<void> {
    await this.remove(digest);
  }

  async collect(digest: string, olderThanMs: number, referenced: () => boolean): Promise<boolean> {
    // one synchronous step: the last checks, the row and the name (see info())
    const row = this.meta?.db.prepare('SELECT written_at FROM blobs WHERE digest = ?').get(digest) as { written_at: string } | undefined;
    let writtenAtMs: number;
    try {
      writtenAtMs = row !== undefined ? Date.parse(row.written_at) : statSync(this.blobPath(digest)).mtimeMs;
    } catch {
      return false;
    }
    if (writtenAtMs >= olderThanMs || referenced()) return false;
    return this.remove(digest);
  }

  /**
   * Takes the blob's name and row away in one synchronous step (an info() or ingest after it
   * finds the blob absent), then deletes its content; false when it was not there.
   */
  private async remove(digest: string): Promise<boolean> {
    const trash = path.join(this.ingestDir, `gc-${randomBytes(8).toString('hex')}`);
    try {
      renameSync(this.blobPath(digest), trash);
    } catch (err) {
      // already gone: its row goes too
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.meta?.db.prepare('DELETE FROM blobs WHERE digest = ?').run(digest);
      return false;
    }
    this.meta?.db.prepare('DELETE FROM blobs WHERE digest = ?').run(digest);
    await fsp.rm(trash, { force: true });
    return true;
  }

  /** Every blob with its size and when it was written (for GC), in no particular order. */
  async list(): Promise<StoredBlob[]> {
    if (this.meta !== undefined) {
      const rows = this.meta.db.prepare('SELECT digest, size, written_at FROM blobs').all() as Array<{ digest: string; size: number; written_at: string }>;
      return rows.map((r) => ({ digest: r.digest, size: r.size, writtenAtMs: Date.parse(r.written_at) }));
    }
    const dir = path.dirname(this.blobPath('sha256:' + '0'.repeat(64)));
    const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => /^[a-f0-9]{64}$/.test(n));
    const out: StoredBlob[] = [];
    for (const n of names) {
      const st = await fsp.stat(path.join(dir, n)).catch(() => undefined);
      if (st) out.push({ digest: `sha256:${n}`, size: st.size, writtenAtMs: st.mtimeMs });
    }
    return out;
  }
}

/** A blob as the content store lists it. */
export interface StoredBlob {
  digest: string;
  size: number;
  writtenAtMs: number;
}

