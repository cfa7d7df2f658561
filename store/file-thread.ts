import { Worker } from 'node:worker_threads';

/**
 * The file thread's whole program: the operations of a batch, in order. A write creates its
 * file (O_EXCL, never through a link, 0600), writes it whole, gives it its owner, mode and
 * times when asked, and closes it; a link is link(2). A read batch fills slots of a buffer
 * the caller handed over with whole small files (never through a link) and hands it back. What failed is posted back by index with
 * its errno code. Plain JavaScript with Node built-ins only, run with `eval`, so the compiled
 * daemon and the TypeScript tests start the same thread (a script file beside the module would
 * exist only in the build's output).
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW;
const probe = new Uint8Array(1);
function readInto(job) {
  // each file read whole into its slot of the buffer; one byte more is looked for in a probe,
  // so a file that grew since its stat is seen (got = size + 1) without writing past the slot
  const buf = new Uint8Array(job.buffer);
  const got = [];
  const failed = [];
  for (let i = 0; i < job.files.length; i++) {
    let fd;
    try {
      fd = fs.openSync(job.files[i], READ_FLAGS);
      const size = job.sizes[i];
      let n = 0;
      while (n < size) {
        const r = fs.readSync(fd, buf, job.offsets[i] + n, size - n, null);
        if (r === 0) break;
        n += r;
      }
      if (n === size && fs.readSync(fd, probe, 0, 1, null) > 0) n++;
      got.push(n);
    } catch (err) {
      got.push(-1);
      failed.push([i, (err && err.code) || String(err)]);
    } finally {
      if (fd !== undefined) try { fs.closeSync(fd); } catch {}
    }
  }
  parentPort.postMessage({ id: job.id, got, failed, buffer: job.buffer }, [job.buffer]);
}
parentPort.on('message', (batch) => {
  if (batch.read) return readInto(batch);
  const failed = [];
  const bytes = new Uint8Array(batch.data);
  for (let i = 0; i < batch.files.length; i++) {
    if (batch.linkFrom[i] !== null) {
      try { fs.linkSync(batch.linkFrom[i], batch.files[i]); } catch (err) { failed.push([i, (err && err.code) || String(err)]); }
      continue;
    }
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
  /** per file: the existing file to link it to, or null for a write */
  linkFrom: Array<string | null>;
}

interface Reply {
  id: number;
  failed: Array<[number, string]>;
}

interface ReadReply {
  id: number;
  got: number[];
  failed: Array<[number, string]>;
  buffer: ArrayBuffer;
}

/** An operation the file thread could not do: the path it made and the errno code. */
export class FileThreadError extends Error {
  constructor(
    readonly file: string,
    readonly code: string,
  ) {
    super(`Cannot make ${file}: ${code}`);
  }
}

const EMPTY = Buffer.alloc(0);

/** Operations gathered into one message to the thread; a batch also goes at the next turn of the event loop. */
const BATCH_FILES = 64;
const BATCH_BYTES = 256 * 1024;

/**
 * Makes files on a thread of its own: small received files written whole, hard links of a
 * COPY. The kernel's work of making 20,000 inodes or links (most of a cold context transfer,
 * and most of a linked COPY, on the main thread; see the commits) then runs beside the main
 * thread's decoding and walking instead of between them. Operations go in batches, done in the
 * order given; each one's promise settles when its batch is done (rejecting with a
 * FileThreadError).
 *
 * Lifecycle: one per daemon ({@link sharedFileThread}), its thread started at the first
 * operation; it keeps the process alive only while it has batches to do; `close()` ends it.
 */
export class FileThread {
  private worker: Worker | undefined;
  private next = 1;
  private pending: { files: string[]; chunks: Buffer[]; meta: Batch['meta']; linkFrom: Batch['linkFrom']; bytes: number; waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> } | undefined;
  private readonly sent = new Map<number, { files: string[]; waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> }>();
  private scheduled = false;
  private readonly reads = new Map<number, { files: string[]; resolve: (r: { buffer: ArrayBuffer; got: number[] }) => void; reject: (e: Error) => void }>();

  /** Creates `file` (which must not exist) with `content` (and `meta`, when given), which must not change before the next turn of the event loop (it is copied into the batch then). */
  write(file: string, content: Buffer, meta?: StagedMeta): Promise<void> {
    return this.queue(file, content, meta ? [meta.uid, meta.gid, meta.mode, meta.time] : null, null);
  }

  /** Makes `file` (which must not exist) a hard link of `existing`. */
  link(existing: string, file: string): Promise<void> {
    return this.queue(file, EMPTY, null, existing);
  }

  private queue(file: string, content: Buffer, meta: Batch['meta'][number], linkFrom: string | null): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending ??= { files: [], chunks: [], meta: [], linkFrom: [], bytes: 0, waiters: [] };
      const p = this.pending;
      p.files.push(file);
      p.chunks.push(content);
      p.meta.push(meta);
      p.linkFrom.push(linkFrom);
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

  /** Ends the thread; operations still queued fail. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
    this.failAll(new Error('the file thread was stopped'));
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
    const batch: Batch = { id, files: p.files, offsets, data, meta: p.meta, linkFrom: p.linkFrom };
    const worker = this.thread();
    // held while it has work: a write's caller may have nothing else keeping the process up
    if (this.sent.size + this.reads.size === 1) worker.ref();
    worker.postMessage(batch, [data]);
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (reply: Reply | ReadReply) => this.settle(reply));
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      this.failAll(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the file thread exited (${code})`)));
    // after the listeners, which take a reference; flush() holds one while batches are out
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /**
   * Reads each of `files` (regular files, opened without following a link) into `buffer` at
   * its offset, `sizes[i]` bytes at most; gives the buffer back with how many bytes each file
   * had: its size, less when it shrank, size + 1 when it grew (the extra byte is not stored).
   * The buffer is moved to the thread meanwhile: the caller must not touch it until this
   * settles. Rejects with a FileThreadError for a file that cannot be opened or read.
   */
  readFiles(buffer: ArrayBuffer, files: string[], offsets: number[], sizes: number[]): Promise<{ buffer: ArrayBuffer; got: number[] }> {
    return new Promise((resolve, reject) => {
      const id = this.next++;
      this.reads.set(id, { files, resolve, reject });
      const worker = this.thread();
      if (this.sent.size + this.reads.size === 1) worker.ref();
      worker.postMessage({ read: true, id, buffer, files, offsets, sizes }, [buffer]);
    });
  }

  private settle(reply: Reply | ReadReply): void {
    if ('got' in reply) {
      const read = this.reads.get(reply.id);
      if (!read) return;
      this.reads.delete(reply.id);
      if (this.sent.size + this.reads.size === 0) this.worker?.unref();
      const failure = reply.failed[0];
      if (failure) read.reject(new FileThreadError(read.files[failure[0]] as string, failure[1]));
      else read.resolve({ buffer: reply.buffer, got: reply.got });
      return;
    }
    const batch = this.sent.get(reply.id);
    if (!batch) return;
    this.sent.delete(reply.id);
    if (this.sent.size + this.reads.size === 0) this.worker?.unref();
    const failed = new Map(reply.failed);
    batch.waiters.forEach((w, i) => {
      const code = failed.get(i);
      if (code === undefined) w.resolve();
      else w.reject(new FileThreadError(batch.files[i] as string, code));
    });
  }

  private failAll(err: Error): void {
    const p = this.pending;
    this.pending = undefined;
    for (const w of p?.waiters ?? []) w.reject(err);
    for (const [id, read] of this.reads) {
      this.reads.delete(id);
      read.reject(err);
    }
    for (const [id, batch] of this.sent) {
      this.sent.delete(id);
      for (const w of batch.waiters) w.reject(err);
    }
  }
}

let shared: FileThread | undefined;

/** The daemon's file thread. */
export function sharedFileThread(): FileThread {
  shared ??= new FileThread();
  return shared;
}
