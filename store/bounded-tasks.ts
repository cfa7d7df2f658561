/**
 * Runs asynchronous jobs at most `limit` at a time, for file work that a walk produces faster
 * than the thread pool finishes it (copies, clones). The first failure is kept: later `run`
 * calls throw it instead of starting more work.
 * Lifecycle: one per batch of work; `run` any number of times, then exactly one of `drain`
 * (waits for everything, throws the first failure) or, on an error path, `settle` (waits
 * for what is in flight, never throws) before the caller deletes what the jobs wrote.
 */
export class BoundedTasks {
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  private readonly idleWaiters: Array<() => void> = [];
  private failed = false;
  private failure: unknown;

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Cannot bound tasks: limit ${limit} is not a positive integer`);
  }

  /** Resolves once `work` has started (a slot was free); its failure surfaces in `drain`. */
  async run(work: () => Promise<void>): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failed) throw this.failure;
    this.active++;
    let job: Promise<void>;
    try {
      job = work();
    } catch (err) {
      // a callback that throws before returning its promise still gives its slot back
      job = Promise.reject(err);
    }
    job.then(
      () => this.done(),
      (err: unknown) => {
        if (!this.failed) {
          this.failed = true;
          this.failure = err;
        }
        this.done();
      },
    );
  }

  /** Waits for every job started so far; throws the first failure, if any. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.failed) throw this.failure;
  }

  /** Waits for every job in flight, whatever their outcome. */
  async settle(): Promise<void> {
    while (this.active > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private done(): void {
    this.active--;
    this.waiters.shift()?.();
    if (this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
