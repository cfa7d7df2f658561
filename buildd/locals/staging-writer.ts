import { Worker } from 'node:worker_threads';

/**
 * The staging thread's whole program: each file of a batch is created (O_EXCL, never through a
 * link, 0600), written whole, given its owner, mode and times when asked, and closed, in order;
 * what failed is posted back by index with its errno code. Plain JavaScript with Node built-ins only, run with `eval`, so the compiled daemon
 * and the TypeScript tests start the same thread (a script file beside the module would exist
 * only in the build's output).
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
parentPort.on('message', (batch) => {
  const failed = [];
  const bytes = new Uint8Array(batch.data);
  for (let i = 0; i < batch.files.length; i++) {
    const data = bytes.subarray(batch.offsets[i], batch.offsets[i + 1]);
    let fd;
    try {
      fd = fs.openSync(batch.files[i], FLAGS, 0o600);
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
      const meta = batch.meta[i];
      if (meta) {
        // owner first: a chown clears the setuid bits the mode may set
        fs.fchownSync(fd, meta[0], meta[1]);
        fs.fchmodSync(fd, meta[2]);
        fs.futimesSync(fd, meta[3], meta[3]);
      }
    } catch (err) {
      failed.push([i, (err && err.code) || String(err)]);
    } finally {
      if (fd !== undefined) {
        try { fs.closeSync(fd); } catch (err) { failed.push([i, (err && err.code) || String(err)]); }
      }
    }
  }
  parentPort.postMessage({ id: batch.id, failed });
});
`;

/** What a staged file is given after its content (by its descriptor: no path is looked up again). */
export interface StagedMeta {
  uid: number;
  gid: number;
  mode: number;
  /** atime and mtime, in seconds */
  time: number;
}

interface Batch {
  id: number;
  files: string[];
  offsets: number[];
  data: ArrayBuffer;
  /** [uid, gid, mode, time] or null, per file */
  meta: Array<[number, number, number, number] | null>;
}

interface Reply {
  id: number;
  failed: Array<[number, string]>;
}

/** A file the staging thread could not write: its path and errno code. */
export class StagingError extends Error {
  constructor(
    readonly file: string,
    readonly code: string,
  ) {
    super(`Cannot stage ${file}: ${code}`);
  }
}

/** Files gathered into one message to the thread; a batch also goes at the next turn of the event loop. */
const BATCH_FILES = 64;
const BATCH_BYTES = 256 * 1024;

/**
 * Creates and writes small received files on a thread of its own, so the kernel's work of
 * making 20,000 inodes (most of a cold context transfer on the main thread, see the commit)
 * runs beside the main thread's decoding of the stream instead of between its messages. Files
 * go in batches, written in the order given; each write's promise settles when its batch is
 * done (rejecting with a StagingError).
 *
 * Lifecycle: one per daemon ({@link sharedStagingWriter}), its thread started at the first write;
 * it keeps the process alive only while it has batches to write; `close()` ends it.
 */
export class StagingWriter {
  private worker: Worker | undefined;
  private next = 1;
  private pending: { files: string[]; chunks: Buffer[]; meta: Batch['meta']; bytes: number; waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> } | undefined;
  private readonly sent = new Map<number, { files: string[]; waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> }>();
  private scheduled = false;

  /** Creates `file` (which must not exist) with `content` (and `meta`, when given), which must not change before the next turn of the event loop (it is copied into the batch then). */
  write(file: string, content: Buffer, meta?: StagedMeta): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending ??= { files: [], chunks: [], meta: [], bytes: 0, waiters: [] };
      const p = this.pending;
      p.files.push(file);
      p.chunks.push(content);
      p.meta.push(meta ? [meta.uid, meta.gid, meta.mode, meta.time] : null);
      p.bytes += content.length;
      p.waiters.push({ resolve, reject });
      if (p.files.length >= BATCH_FILES || p.bytes >= BATCH_BYTES) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  /** Ends the thread; writes still queued fail. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
    this.failAll(new Error('the staging thread was stopped'));
  }

  private flush(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    const id = this.next++;
    const offsets = [0];
    const data = new ArrayBuffer(p.bytes);
    const view = new Uint8Array(data);
    let at = 0;
    for (const c of p.chunks) {
      view.set(c, at);
      at += c.length;
      offsets.push(at);
    }
    this.sent.set(id, { files: p.files, waiters: p.waiters });
    const batch: Batch = { id, files: p.files, offsets, data, meta: p.meta };
    const worker = this.thread();
    // held while it has work: a write's caller may have nothing else keeping the process up
    if (this.sent.size === 1) worker.ref();
    worker.postMessage(batch, [data]);
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (reply: Reply) => this.settle(reply));
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      this.failAll(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the staging thread exited (${code})`)));
    // after the listeners, which take a reference; flush() holds one while batches are out
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private settle(reply: Reply): void {
    const batch = this.sent.get(reply.id);
    if (!batch) return;
    this.sent.delete(reply.id);
    if (this.sent.size === 0) this.worker?.unref();
    const failed = new Map(reply.failed);
    batch.waiters.forEach((w, i) => {
      const code = failed.get(i);
      if (code === undefined) w.resolve();
      else w.reject(new StagingError(batch.files[i] as string, code));
    });
  }

  private failAll(err: Error): void {
    const p = this.pending;
    this.pending = undefined;
    for (const w of p?.waiters ?? []) w.reject(err);
    for (const [id, batch] of this.sent) {
      this.sent.delete(id);
      for (const w of batch.waiters) w.reject(err);
    }
  }
}

let shared: StagingWriter | undefined;

/** The daemon's staging thread. */
export function sharedStagingWriter(): StagingWriter {
  shared ??= new StagingWriter();
  return shared;
}
