import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { BuildError } from '../solver/build-error';
import type { WalkEntry } from './context-walk';
import type { WalkJob, WalkMessage } from './walk-messages';

/**
 * One local's walk (walkContext with its ignore rules, see localIgnore), started in a worker
 * thread as soon as buildctl has read its flags: while the main thread loads gRPC, connects and
 * starts the build, the walk's lstat and llistxattr calls (most of an unchanged context's cost)
 * are done on the other core. `entries()` then yields the same entries in the same order as
 * walkContext would, with its errors.
 *
 * Lifecycle: `start`, then `entries()` read at most once, then `close()` (always: it stops a
 * walk nobody read, after a failed connect say). The worker runs at most AHEAD_BATCHES batches
 * ahead of the reader.
 */
export class PrefetchedWalk {
  private readonly queue: WalkMessage[] = [];
  private wake: (() => void) | undefined;
  private readonly taken: Int32Array;
  private exited = false;

  private constructor(private readonly worker: Worker, shared: SharedArrayBuffer) {
    this.taken = new Int32Array(shared);
    worker.on('message', (msg: WalkMessage) => this.push(msg));
    worker.on('error', (err: Error) => this.push({ kind: 'error', code: 'internal', message: `Cannot walk the local directory: ${err.message}` }));
    worker.on('exit', () => {
      this.exited = true;
      this.push(undefined);
    });
  }

  /** Starts walking local `name` of `locals` (`filename`: the frontend's Dockerfile name). */
  static start(name: string, locals: Record<string, string>, filename: string): PrefetchedWalk {
    const shared = new SharedArrayBuffer(4);
    const job: WalkJob = { name, locals, filename, taken: shared };
    const worker = new Worker(path.join(__dirname, 'walk-worker.js'), { workerData: job });
    return new PrefetchedWalk(worker, shared);
  }

  /** The walk's entries; throws what the walk threw (a BuildError with its code). */
  async *entries(): AsyncGenerator<WalkEntry> {
    for (;;) {
      const msg = this.queue.shift();
      if (msg === undefined) {
        if (this.exited) throw new BuildError('internal', 'Cannot walk the local directory: the walk stopped before its end');
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      if (msg.kind === 'done') return;
      if (msg.kind === 'error') throw new BuildError(msg.code, msg.message);
      Atomics.add(this.taken, 0, 1);
      Atomics.notify(this.taken, 0);
      for (const e of msg.entries) yield { ...e, xattrs: new Map(e.xattrs.map(([k, v]) => [k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)])) };
    }
  }

  /** Stops the worker if it still runs. */
  async close(): Promise<void> {
    if (!this.exited) await this.worker.terminate();
  }

  private push(msg: WalkMessage | undefined): void {
    if (msg !== undefined) this.queue.push(msg);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
