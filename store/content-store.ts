import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuildError } from '../solver/build-error';

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
  info(digest: string): Promise<BlobInfo | undefined>;
  /** A stream of the blob; throws not-found when absent. */
  read(digest: string): Promise<Readable>;
  /** The blob's path on disk, for consumers that need a file (never write to it). */
  blobPath(digest: string): string;
  ingest(source: Readable | AsyncIterable<Buffer>, expected?: Partial<BlobInfo>, signal?: AbortSignal): Promise<BlobInfo>;
  readJson(digest: string, maxBytes?: number): Promise<unknown>;
  delete(digest: string): Promise<void>;
  /** Every blob (for GC). */
  list(): Promise<StoredBlob[]>;
}

const DIGEST_RE = /^sha256:([a-f0-9]{64})$/;

/** Parses a digest, throwing invalid-argument for anything but sha256:<64 hex>. */
export function digestHex(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m) throw new BuildError('invalid-argument', `Cannot use digest ${JSON.stringify(digest.slice(0, 100))}: not sha256:<64 hex digits>`);
  return m[1];
}

/** The filesystem ContentStore under `<root>/content`. */
export class LocalContentStore implements ContentStore {
  private readonly blobsDir: string;
  private readonly ingestDir: string;

  private constructor(root: string) {
    this.blobsDir = path.join(root, 'blobs', 'sha256');
    this.ingestDir = path.join(root, 'ingest');
  }

  static async open(root: string): Promise<LocalContentStore> {
    const store = new LocalContentStore(root);
    await fsp.mkdir(store.blobsDir, { recursive: true });
    // Leftovers of writes interrupted by a crash: never visible, safe to drop.
    await fsp.rm(store.ingestDir, { recursive: true, force: true });
    await fsp.mkdir(store.ingestDir, { recursive: true });
    return store;
  }

  blobPath(digest: string): string {
    return path.join(this.blobsDir, digestHex(digest));
  }

  async info(digest: string): Promise<BlobInfo | undefined> {
    try {
      const st = await fsp.stat(this.blobPath(digest));
      return { digest, size: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
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
        if (source instanceof Readable) source.destroy();
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
      return { digest, size };
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  async delete(digest: string): Promise<void> {
    await fsp.rm(this.blobPath(digest), { force: true });
  }

  /** Every blob with its size and when it was written (for GC), in no particular order. */
  async list(): Promise<StoredBlob[]> {
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

