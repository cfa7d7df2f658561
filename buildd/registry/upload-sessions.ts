import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobInfo, ContentStore } from '../../store/content-store';
import { DistributionError } from './distribution-error';

/** Uploads in progress at once, over every repository (each holds a file and a hash). */
export const MAX_UPLOADS = 1000;

/** One blob upload in progress: its bytes so far in a file, hashed as they came. */
interface Upload {
  id: string;
  name: string;
  file: string;
  size: number;
  hash: Hash;
  /** last time a request touched it (for the sweep of abandoned uploads) */
  touched: number;
  /** a request is writing to it: a second one at once is refused */
  busy: boolean;
}

/**
 * Blob uploads of the embedded registry (POST, PATCH, PUT of the Distribution API): each is a
 * file under `<dir>` hashed while written, committed into the content store by `finish` only
 * when its digest is the one the client names. Sessions live in memory: a daemon restart
 * starts with none (and removes what a previous one left), and the client starts again.
 *
 * Lifecycle: `open` once per daemon; `sweep` (called periodically by the server) removes the
 * uploads nobody touched for `idleMs`; `close` removes every upload.
 */
export class UploadSessions {
  private readonly uploads = new Map<string, Upload>();

  private constructor(
    private readonly dir: string,
    private readonly content: ContentStore,
  ) {}

  static async open(dir: string, content: ContentStore): Promise<UploadSessions> {
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return new UploadSessions(dir, content);
  }

  /** Starts an upload into repository `name`; its id goes into the Location URL. */
  async start(name: string): Promise<string> {
    if (this.uploads.size >= MAX_UPLOADS) throw new DistributionError(429, 'TOOMANYREQUESTS', `${MAX_UPLOADS} uploads are in progress already`);
    const id = randomUUID();
    const file = path.join(this.dir, id);
    await (await fsp.open(file, 'wx', 0o600)).close();
    this.uploads.set(id, { id, name, file, size: 0, hash: createHash('sha256'), touched: Date.now(), busy: false });
    return id;
  }

  /** Bytes received so far (the Range a status request answers with). */
  size(name: string, id: string): number {
    return this.get(name, id).size;
  }

  /**
   * Appends `body` to the upload. `from` is where the client says the chunk starts
   * (Content-Range), which must be the end of what came so far; undefined for a streamed PATCH.
   * A body that fails halfway leaves the upload as it was before it (the file is cut back).
   */
  async append(name: string, id: string, body: Readable, from: number | undefined, signal?: AbortSignal): Promise<number> {
    const up = this.take(name, id);
    try {
      if (from !== undefined && from !== up.size) {
        throw new DistributionError(416, 'BLOB_UPLOAD_INVALID', `chunk starts at ${from}, the upload has ${up.size} bytes`, { size: up.size });
      }
      const hash = up.hash.copy();
      let size = up.size;
      try {
        await pipeline(
          body,
          async function* (chunks: AsyncIterable<Buffer>) {
            for await (const chunk of chunks) {
              hash.update(chunk);
              size += chunk.length;
              yield chunk;
            }
          },
          createWriteStream(up.file, { flags: 'a' }),
          { signal },
        );
      } catch (err) {
        await fsp.truncate(up.file, up.size).catch(() => undefined);
        throw err;
      }
      up.hash = hash;
      up.size = size;
      return size;
    } finally {
      this.release(up);
    }
  }

  /**
   * Ends the upload as blob `digest`: what came must hash to it (else DIGEST_INVALID, and the
   * upload is gone: nothing of it is kept). Commits it into the content store and returns it.
   */
  async finish(name: string, id: string, digest: string, signal?: AbortSignal): Promise<BlobInfo> {
    const up = this.take(name, id);
    try {
      const got = 'sha256:' + up.hash.copy().digest('hex');
      if (got !== digest) throw new DistributionError(400, 'DIGEST_INVALID', `the upload has digest ${got}, not ${digest}`);
      return await this.content.ingest(createReadStream(up.file), { digest, size: up.size }, signal);
    } finally {
      this.uploads.delete(id);
      await fsp.rm(up.file, { force: true });
    }
  }

  /** Drops the upload (DELETE, or a failure the client cannot recover from). */
  async cancel(name: string, id: string): Promise<void> {
    // a request still writing to it would recreate its file: refused until that one ends
    const up = this.take(name, id);
    this.uploads.delete(id);
    await fsp.rm(up.file, { force: true });
  }

  /** Removes uploads idle for `idleMs` or more; returns how many. */
  async sweep(idleMs: number, now = Date.now()): Promise<number> {
    let removed = 0;
    for (const up of [...this.uploads.values()]) {
      if (up.busy || now - up.touched < idleMs) continue;
      this.uploads.delete(up.id);
      await fsp.rm(up.file, { force: true });
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {
    this.uploads.clear();
    await fsp.rm(this.dir, { recursive: true, force: true });
  }

  private get(name: string, id: string): Upload {
    const up = this.uploads.get(id);
    if (!up || up.name !== name) throw new DistributionError(404, 'BLOB_UPLOAD_UNKNOWN', `no upload ${id} in ${name}`);
    up.touched = Date.now();
    return up;
  }

  private take(name: string, id: string): Upload {
    const up = this.get(name, id);
    if (up.busy) throw new DistributionError(409, 'BLOB_UPLOAD_INVALID', `upload ${id} is receiving another request`);
    up.busy = true;
    return up;
  }

  private release(up: Upload): void {
    up.busy = false;
    up.touched = Date.now();
  }
}
