import type { OpContext, OpResult, StepLog } from './worker';

const REPLAY_BYTES = 1024 * 1024;

/**
 * One step run on behalf of every build that needs it at the same time (same cache key).
 * It has its own abort signal, aborted only when the last build waiting on it goes away, and
 * its output goes to the logs of all builds still waiting. Lifecycle: made by the first
 * build that needs the step, dropped by the solver when the run settles.
 */
export class SharedRun {
  readonly promise: Promise<OpResult>;
  private readonly controller = new AbortController();
  private readonly logs = new Set<StepLog>();
  /** recent output, replayed to a build that joins late (bounded: this is a tail, not a log) */
  private readonly replay: Array<{ stream: 1 | 2; data: Buffer }> = [];
  private replayBytes = 0;
  private waiters = 0;
  private settled = false;

  constructor(first: OpContext, run: (ctx: OpContext) => Promise<OpResult>) {
    const shared: OpContext = {
      // The first build's locals: a step is shared only when its inputs' content is the same.
      locals: first.locals,
      signal: this.controller.signal,
      log: {
        write: (stream, data) => {
          this.remember(stream, data);
          this.logs.forEach((l) => l.write(stream, data));
        },
      },
    };
    this.promise = run(shared);
    this.promise.then(
      () => (this.settled = true),
      () => (this.settled = true),
    );
  }

  /** How many builds wait on the run now. */
  get waiting(): number {
    return this.waiters;
  }

  private remember(stream: 1 | 2, data: Buffer): void {
    this.replay.push({ stream, data });
    this.replayBytes += data.length;
    while (this.replayBytes > REPLAY_BYTES && this.replay.length > 1) this.replayBytes -= (this.replay.shift() as { data: Buffer }).data.length;
  }

  /** The run's result for one build; rejects at once for that build when its signal aborts. */
  join(ctx: OpContext): Promise<OpResult> {
    this.waiters++;
    for (const { stream, data } of this.replay) ctx.log.write(stream, data);
    this.logs.add(ctx.log);
    return new Promise<OpResult>((resolve, reject) => {
      let left = false;
      const leave = (): void => {
        if (left) return;
        left = true;
        ctx.signal.removeEventListener('abort', onAbort);
        this.logs.delete(ctx.log);
        if (--this.waiters === 0 && !this.settled) this.controller.abort(ctx.signal.reason);
      };
      const onAbort = (): void => {
        leave();
        reject(ctx.signal.reason);
      };
      if (ctx.signal.aborted) return onAbort();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      this.promise.then(
        (r) => {
          leave();
          resolve(r);
        },
        (err: unknown) => {
          leave();
          reject(err);
        },
      );
    });
  }
}
