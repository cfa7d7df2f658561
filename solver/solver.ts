import { BuildError, toBuildError } from './build-error';
import { CacheStore } from './cache-store';
import { DefinitionGraph, Vertex } from './definition-graph';
import { opInputs } from './op';
import { Semaphore } from './semaphore';
import { explainMiss, stepIdentity, type KeyParts } from './key-parts';
import { SharedRun } from './shared-run';
import { OpContext, OpResult, SessionAttachables, Worker } from './worker';

/** Progress of vertices as the solver sees it; the daemon forwards these to the client. */
export type SolveEvent =
  | { type: 'vertex'; digest: string; name: string; started?: number; completed?: number; cached: boolean; error?: string; cacheMiss?: string }
  | { type: 'log'; vertex: string; stream: 1 | 2; data: Buffer };

export interface SolveOptions {
  locals: Record<string, string>;
  /** the client's secrets and ssh agents, for RUN mounts */
  session?: SessionAttachables;
  onEvent: (event: SolveEvent) => void;
  signal: AbortSignal;
}

/**
 * Where the solver tells operators what a build's progress does not show (the daemon's
 * logger fits). Lifecycle: given to the solver at construction, used for its lifetime.
 */
export interface SolverLog {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
}

interface Solved {
  key: string;
  result: OpResult;
}

/**
 * Runs definition graphs: each op once per build (deduplicated by digest), independent
 * branches in parallel up to `maxParallelism` running steps, results looked up and stored in
 * the persistent cache by content-based key, and the same key shared by concurrent builds
 * (the second waits for the first; see SharedRun for whose context a shared step reads). The
 * first failure cancels the rest of its build.
 *
 * Lifecycle: one per daemon; `solve` is called once per build and settles only once no step
 * still reads that build's directories, so its caller may remove them then.
 */
export class Solver {
  private readonly slots: Semaphore;
  private readonly inflight = new Map<string, SharedRun>();
  private readonly log: SolverLog | undefined;

  constructor(
    private readonly worker: Worker,
    private readonly cache: CacheStore,
    opts: { maxParallelism: number; log?: SolverLog },
  ) {
    this.slots = new Semaphore(opts.maxParallelism);
    this.log = opts.log;
  }

  /** Returns the result of the graph's output, or a scratch snapshot when it has none. */
  async solve(graph: DefinitionGraph, opts: SolveOptions): Promise<OpResult> {
    if (!graph.result) return { kind: 'snapshot', id: null };
    const failFast = new AbortController();
    const signal = AbortSignal.any([opts.signal, failFast.signal]);
    const memo = new Map<string, Promise<Solved>>();
    // this build's turn at the step slots (see Semaphore)
    const group = {};
    const solveVertex = (digest: string): Promise<Solved> => {
      let p = memo.get(digest);
      if (!p) {
        const vertex = graph.vertices.get(digest) as Vertex;
        p = this.solveOne(vertex, solveVertex, { ...opts, signal }, group, (d) => graph.vertices.get(d)?.meta.name ?? d);
        // Keep the first failure as the build's error; siblings then see an abort.
        p.catch(() => failFast.abort(new BuildError('cancelled', 'Cannot continue: another step failed')));
        memo.set(digest, p);
      }
      return p;
    };
    try {
      const solved = await solveVertex(graph.result.digest);
      return solved.result;
    } catch (err) {
      opts.signal.throwIfAborted();
      throw toBuildError(err);
    } finally {
      // Let every started branch settle before returning, so no step outlives its build.
      await Promise.allSettled(memo.values());
    }
  }

  private async solveOne(vertex: Vertex, solveInput: (d: string) => Promise<Solved>, opts: SolveOptions, group: object, nameOf: (digest: string) => string): Promise<Solved> {
    const inputs = await Promise.all(opInputs(vertex.op).map((i) => solveInput(i.digest)));
    opts.signal.throwIfAborted();
    const ctx: OpContext = {
      locals: opts.locals,
      session: opts.session,
      signal: opts.signal,
      log: { write: (stream, data) => opts.onEvent({ type: 'log', vertex: vertex.digest, stream, data }) },
      group,
    };
    const started = Date.now();
    const emit = (extra: Partial<Extract<SolveEvent, { type: 'vertex' }>>): void =>
      opts.onEvent({ type: 'vertex', digest: vertex.digest, name: vertex.meta.name, cached: false, started, ...extra });
    emit({});
    try {
      const { key, cacheable, parts } = await this.worker.cacheKey(vertex, inputs, ctx);
      const inputNames = opInputs(vertex.op).map((i) => nameOf(i.digest));
      const step = parts && cacheable && !vertex.meta.ignoreCache ? stepIdentity(vertex.op.kind, vertex.meta.name, vertex.meta.range, inputNames) : undefined;
      if (cacheable && !vertex.meta.ignoreCache) {
        const hit = await this.lookup(key);
        if (hit) {
          emit({ cached: true, completed: Date.now() });
          if (step !== undefined && parts) await this.cache.recordStepKey(step, key, parts);
          return { key, result: hit };
        }
        if (step !== undefined && parts) {
          const cacheMiss = await this.explain(step, key, parts, inputNames);
          if (cacheMiss !== undefined) emit({ cacheMiss });
        }
      }
      const result = await this.runShared(key, cacheable, vertex, inputs.map((i) => i.result), ctx);
      emit({ completed: Date.now() });
      if (step !== undefined && parts) await this.cache.recordStepKey(step, key, parts);
      return { key, result };
    } catch (err) {
      const cause = toBuildError(err);
      // The client names the failed step and its Dockerfile lines from these.
      const error = cause.vertex !== undefined ? cause : new BuildError(cause.code, cause.message, {
        vertex: vertex.digest,
        range: cause.range ?? vertex.meta.range,
        exitCode: cause.exitCode,
        cause,
      });
      emit({ completed: Date.now(), error: error.message });
      throw error;
    }
  }

  /** Why `key` missed, compared with the last build of the same step (undefined: none, or the same key). */
  private async explain(step: string, key: string, parts: KeyParts, inputNames: string[]): Promise<string | undefined> {
    const before = await this.cache.lastStepKey(step);
    if (before === undefined) return undefined;
    if (before.key === key) return 'its cached result was removed (prune or GC)';
    return explainMiss(before.parts, parts, inputNames) ?? 'its cache key changed';
  }

  private async lookup(key: string): Promise<OpResult | undefined> {
    // taken and counted as used in one step: see CacheStore.take on why GC cannot come between
    const record = await this.cache.take(key);
    if (!record) return undefined;
    const result: OpResult = { kind: 'snapshot', id: record.snapshot };
    return (await this.worker.exists(result)) ? result : undefined;
  }

  private runShared(key: string, cacheable: boolean, vertex: Vertex, inputs: OpResult[], ctx: OpContext): Promise<OpResult> {
    // A local source only names a directory its build has already received: nothing runs, so
    // it takes no step slot (with one, a build's context would wait behind other builds' steps).
    if (isLocalSource(vertex)) return this.worker.run(vertex, inputs, ctx);
    if (!cacheable) return this.runLimited(vertex, inputs, ctx);
    let run = this.inflight.get(key);
    if (!run) {
      const step = vertex.meta.name;
      const created = new SharedRun(
        async (shared, sharedInputs) => {
          const result = await this.runLimited(vertex, sharedInputs, shared);
          if (result.kind === 'snapshot') {
            await this.cache.put({ key, snapshot: result.id, createdAt: new Date().toISOString(), description: step });
          }
          return result;
        },
        {
          restarted: (builds) => this.log?.info({ step, key, builds }, 'a shared step restarts with the context of another build'),
          cancelled: () => this.log?.debug({ step, key }, 'a shared step is cancelled: no build waits on it'),
          settled: () => this.inflight.delete(key),
        },
        borrowsSession(vertex),
      );
      this.inflight.set(key, created);
      run = created;
    }
    const joined = run.join(ctx, inputs);
    this.log?.debug({ step: vertex.meta.name, key, builds: run.waiting }, 'a build waits on a shared step');
    return joined;
  }

  private async runLimited(vertex: Vertex, inputs: OpResult[], ctx: OpContext): Promise<OpResult> {
    const release = await this.slots.acquire(ctx.signal, ctx.group);
    try {
      return await this.worker.run(vertex, inputs, ctx);
    } finally {
      release();
    }
  }
}

function isLocalSource(vertex: Vertex): boolean {
  return vertex.op.kind === 'source' && vertex.op.identifier.startsWith('local://');
}

/**
 * Whether a step reads what its build's client lends: secrets and ssh agents of a RUN, the
 * registry credentials an image pull uses (as BuildKit pulls with a waiting build's session).
 */
function borrowsSession(vertex: Vertex): boolean {
  const op = vertex.op;
  if (op.kind === 'exec') return op.secrets !== undefined || op.ssh !== undefined;
  return op.kind === 'source' && op.identifier.startsWith('docker-image://');
}
