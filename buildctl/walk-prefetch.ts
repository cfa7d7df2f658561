import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { BuildError } from '../solver/build-error';
import type { WalkEntry } from './context-walk';
import type { WalkedFiles } from './listed-files';
import { takeOne, type WalkJob, type WalkMessage } from './walk-messages';

/**
 * One local's walk (walkContext with its ignore rules, see localIgnore), started in a worker
 * thread as soon as buildctl has read its flags: while the main thread loads gRPC, connects and
 * starts the build, the walk's lstat and llistxattr calls (most of an unchanged context's cost)
 * and the encoding of the listing are done on the other core. `entries()` then yields the same
 * entries in the same order as walkContext would, with its errors; `batches()` yields them in
 * the batches of a keyed listing, each as its encoded BuildClientMessage and its files.
 *
 * Lifecycle: `start`, then `entries()` or `batches()` read at most once, then `close()`
 * (always: it stops a walk nobody read, after a failed connect say). The worker runs at most
 * AHEAD_BATCHES batches ahead of the reader.
 */
export class PrefetchedWalk {
  private readonly queue: WalkMessage[] = [];
  private wake: (() => void) | undefined;
  private readonly taken: Int32Array;
  private exited = false;

  private constructor(private readonly worker: Worker, shared: SharedArrayBuffer, readonly mode: WalkJob['mode']) {
    this.taken = new Int32Array(shared);
    worker.on('message', (msg: WalkMessage) => this.push(msg));
    worker.on('error', (err: Error) => this.push({ kind: 'error', code: 'internal', message: `Cannot walk the local directory: ${err.message}` }));
    worker.on('exit', () => {
      this.exited = true;
      this.push(undefined);
    });
  }

  /**
   * Starts walking local `name` of `locals` (`filename`: the frontend's Dockerfile name), for
   * `mode`: `listing` for a local that will be keyed (then only batches() is read), `entries`
   * for one sent whole (then only entries()).
   */
  static start(name: string, locals: Record<string, string>, filename: string, mode: WalkJob['mode'] = 'listing'): PrefetchedWalk {
    const shared = new SharedArrayBuffer(4);
    const job: WalkJob = { name, locals, filename, taken: shared, mode };
    const worker = new Worker(path.join(__dirname, 'walk-worker.js'), { workerData: job });
    return new PrefetchedWalk(worker, shared, mode);
  }

  /** The walk's entries (`entries` mode); throws what the walk threw (a BuildError with its code). */
  async *entries(): AsyncGenerator<WalkEntry> {
    for await (const msg of this.messages()) {
      if (msg.kind !== 'entries') throw new BuildError('internal', 'Cannot read the walk\'s entries: it was started for a listing');
      for (const e of msg.entries) yield { ...e, xattrs: new Map(e.xattrs.map(([k, v]) => [k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)])) };
    }
  }

  /**
   * The walk in batches of at most BATCH_ENTRIES entries and about BATCH_BYTES (`listing`
   * mode): each as `listing`, the BuildClientMessage that lists it (see encodeListing), and
   * `files`, its files with content; throws what the walk threw.
   */
  async *batches(): AsyncGenerator<{ files: WalkedFiles; listing: Uint8Array }> {
    for await (const msg of this.messages()) {
      if (msg.kind !== 'listing') throw new BuildError('internal', 'Cannot read the walk\'s listing: it was started for entries');
      yield msg;
    }
  }

  private async *messages(): AsyncGenerator<Extract<WalkMessage, { kind: 'entries' | 'listing' }>> {
    for (;;) {
      const msg = this.queue.shift();
      if (msg === undefined) {
        if (this.exited) throw new BuildError('internal', 'Cannot walk the local directory: the walk stopped before its end');
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      if (msg.kind === 'done') return;
      if (msg.kind === 'error') throw new BuildError(msg.code, msg.message);
      takeOne(this.taken);
      yield msg;
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
