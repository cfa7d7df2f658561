import { BuildError } from './build-error';
import type { OpContext, OpResult, StepLog } from './worker';

const REPLAY_BYTES = 1024 * 1024;

/** One build waiting on a shared run, with what the step would run with for that build. */
interface Waiter {
  ctx: OpContext;
  inputs: OpResult[];
}

/** One try at running the step, with the inputs (and locals) of its owner. */
interface Attempt {
  /** the build whose directories the attempt reads; undefined when it reads none */
  owner: Waiter | undefined;
  controller: AbortController;
  /** settles when the worker is done with the attempt (never rejects) */
  done: Promise<void>;
}

/** What a shared run tells its owner (the solver) about its course, for the daemon's log. */
export interface SharedRunEvents {
  /** an attempt was aborted because the build whose context it read left, and runs again for another */
  restarted?(waiting: number): void;
  /** the last waiting build left: the step is aborted */
  cancelled?(): void;
  /**
   * The run has its outcome, called before any build hears it: whoever keeps runs by key
   * drops this one here, so that no build joins a run that is over (and gets, say, the
   * cancellation of builds that left it) but starts a new one.
   */
  settled?(): void;
}

/**
 * One step run on behalf of every build that needs it at the same time (same cache key).
 * Its output goes to the logs of all builds still waiting; it is aborted only when the last
 * of them goes away.
 *
 * A step whose inputs include a build's local directory (a COPY from the context) reads the
 * directory of one waiting build, its owner, which the daemon removes when that build ends.
 * So, as BuildKit tries the session of every build that waits on a vertex, when the owner
 * leaves while others wait, the attempt is aborted and the step runs again with another
 * waiting build's inputs (the cache key covers the selected content, so any waiter's context
 * is as good). A leaving owner's `join` settles only once the worker no longer reads its
 * directories, so its build never outlives what it lent. A step that reads no build's
 * directories just keeps running for the others.
 *
 * Lifecycle: made by the first build that needs the step; `join` once per build; `promise`
 * settles with the step's outcome, after which the solver drops the run.
 */
export class SharedRun {
  readonly promise: Promise<OpResult>;
  private resolve!: (r: OpResult) => void;
  private reject!: (err: unknown) => void;
  private readonly waiters = new Set<Waiter>();
  private attempt: Attempt | undefined;
  /** recent output of the current attempt, replayed to a build that joins late (a tail, not a log) */
  private replay: Array<{ stream: 1 | 2; data: Buffer }> = [];
  private replayBytes = 0;
  private settled = false;

  constructor(
    private readonly run: (ctx: OpContext, inputs: OpResult[]) => Promise<OpResult>,
    private readonly events: SharedRunEvents = {},
    /** the step reads what a build's client lends (secrets, ssh agents): like locals, an attempt is then owned by one build */
    private readonly borrowsSession = false,
  ) {
    this.promise = new Promise<OpResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Every join listens; the solver too. This keeps an unobserved rejection quiet.
    this.promise.catch(() => undefined);
  }

  /** How many builds wait on the run now. */
  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * The run's result for one build, whose `inputs` the step may run with. Rejects for that
   * build when its signal aborts: at once, or, when the running attempt reads its
   * directories, as soon as the attempt has stopped.
   */
  join(ctx: OpContext, inputs: OpResult[]): Promise<OpResult> {
    if (ctx.signal.aborted) return Promise.reject(ctx.signal.reason);
    const waiter: Waiter = { ctx, inputs };
    this.waiters.add(waiter);
    for (const { stream, data } of this.replay) ctx.log.write(stream, data);
    if (!this.settled && this.attempt === undefined) this.start(waiter);
    return new Promise<OpResult>((resolve, reject) => {
      // A build that left hears its own abort reason, whatever the run's outcome.
      let left = false;
      const onAbort = (): void => {
        left = true;
        const lent = this.leave(waiter);
        const reason: unknown = ctx.signal.reason;
        // settles whatever the lent attempt ends with: a build must never hang on it
        if (lent) void lent.then(() => reject(reason), () => reject(reason));
        else reject(reason);
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      const settled = (hear: () => void): void => {
        if (left) return;
        ctx.signal.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        hear();
      };
      this.promise.then(
        (r) => settled(() => resolve(r)),
        (err: unknown) => settled(() => reject(err)),
      );
    });
  }

  /**
   * Takes a build off the run. Returns what it must wait for before it may release its
   * directories (the attempt it owns, or the one it was the last to wait on), if anything.
   */
  private leave(waiter: Waiter): Promise<void> | undefined {
    this.waiters.delete(waiter);
    const attempt = this.attempt;
    if (attempt === undefined) return undefined;
    if (this.waiters.size === 0) {
      this.events.cancelled?.();
      attempt.controller.abort(waiter.ctx.signal.reason);
      return attempt.done;
    }
    if (attempt.owner !== waiter) return undefined;
    attempt.controller.abort(new BuildError('cancelled', 'Cannot continue with this context: the build that lent it has left'));
    return attempt.done;
  }

  private start(owner: Waiter): void {
    const controller = new AbortController();
    const lendsSession = this.borrowsSession && owner.ctx.session !== undefined;
    const borrows = owner.inputs.some((i) => i.kind === 'local') || lendsSession;
    this.replay = [];
    this.replayBytes = 0;
    const ctx: OpContext = {
      // A shared step that reads no build's directories is given none, so it cannot come to
      // depend on one build (local sources, the only readers of locals, are never shared).
      locals: borrows ? owner.ctx.locals : {},
      ...(lendsSession ? { session: owner.ctx.session } : {}),
      signal: controller.signal,
      log: { write: (stream, data) => this.write(stream, data) },
      // its step slot is taken in the turn of the build that started it
      ...(owner.ctx.group === undefined ? {} : { group: owner.ctx.group }),
    };
    const attempt: Attempt = { owner: borrows ? owner : undefined, controller, done: Promise.resolve() };
    this.attempt = attempt;
    // `done` resolves after `finished`: a leaving owner hears of its end once the next attempt has begun.
    attempt.done = this.run(ctx, owner.inputs).then(
      (result) => this.finished(attempt, { ok: true, result }),
      (err: unknown) => this.finished(attempt, { ok: false, err }),
    );
  }

  /** An attempt has stopped: its outcome is the run's, unless it was aborted for builds still waiting. */
  private finished(attempt: Attempt, outcome: { ok: true; result: OpResult } | { ok: false; err: unknown }): void {
    this.attempt = undefined;
    // A result is good whoever's context it was made from: the key covers the content read.
    if (outcome.ok) return this.settle(() => this.resolve(outcome.result));
    const next = this.waiters.values().next();
    if (attempt.controller.signal.aborted && !next.done) {
      this.events.restarted?.(this.waiters.size);
      return this.start(next.value);
    }
    this.settle(() => this.reject(outcome.err));
  }

  private settle(fn: () => void): void {
    this.settled = true;
    this.events.settled?.();
    fn();
  }

  private write(stream: 1 | 2, data: Buffer): void {
    this.replay.push({ stream, data });
    this.replayBytes += data.length;
    while (this.replayBytes > REPLAY_BYTES && this.replay.length > 1) this.replayBytes -= (this.replay.shift() as { data: Buffer }).data.length;
    for (const w of this.waiters) w.ctx.log.write(stream, data);
  }
}
