import { BuildError, toBuildError } from './build-error';
import { CacheStore } from './cache-store';
import { DefinitionGraph, Vertex } from './definition-graph';
import { opInputs, type OpInput } from './op';
import { Semaphore } from './semaphore';
import { explainMiss, stepIdentity, type KeyParts } from './key-parts';
import { SharedRun } from './shared-run';
import type { CacheSource } from './cache-source';
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
  /** caches this build imports (--import-cache), asked in order after the daemon's own cache misses */
  imports?: readonly CacheSource[];
  /** told of every cacheable step whose result this build has on disk (a hit, a run or a load), for cache export */
  onResult?: (step: SolvedStep) => void;
  /** told of every step found in an import, loaded or not (an inline cache still describes it) */
  onImported?: (step: { key: string; source: CacheSource; description: string }) => void;
}

/** A cacheable step with its result on this daemon, as a cache export sees it. */
export interface SolvedStep {
  key: string;
  result: OpResult;
  /** the step's name, as progress shows it */
  description: string;
  /** the digest of the step's vertex in this build's graph */
  vertex: string;
}

/**
 * Where the solver tells operators what a build's progress does not show (the daemon's
 * logger fits). Lifecycle: given to the solver at construction, used for its lifetime.
 */
export interface SolverLog {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
}

/** A vertex's key, and its result where that is known without running it. */
interface Keyed {
  key: string;
  cacheable: boolean;
  parts?: KeyParts;
  /** the step across builds (see stepIdentity), for explaining a miss; undefined: none */
  step?: string;
  inputNames: string[];
  /** a local source's directory, or a hit in the daemon's own cache */
  result?: OpResult;
  /** an imported cache that holds the key (loaded only when the result is read) */
  imported?: CacheSource;
  /** shows an imported hit as cached: once loaded, or at the end of a build that never read it */
  showCached?: () => void;
}

/** One build's memo of keys and results, by vertex digest. */
interface BuildState {
  graph: DefinitionGraph;
  opts: SolveOptions;
  group: object;
  keys: Map<string, Promise<Keyed>>;
  results: Map<string, Promise<OpResult>>;
  failFast: AbortController;
  /** the first failure of the build: its error, whatever the aborts it caused made others say */
  firstError?: unknown;
}

/**
 * Runs definition graphs in two passes per vertex. First its cache key (from its inputs' keys,
 * never their results, but for a client directory's content): each vertex is looked up in the
 * daemon's cache, then in the imported caches. Then, from the output down, results: a hit is
 * the result; an imported hit is downloaded; a miss reads its inputs' results and runs. So a
 * step whose output nothing reads (under a hit, or under a step that hits) is neither run nor
 * downloaded, as BuildKit's solver loads only what the result needs. (A build without imports
 * runs a miss as soon as its key is known; see computeKey.)
 *
 * Each op once per build (deduplicated by digest), independent branches in parallel up to
 * `maxParallelism` running steps, and the same key shared by concurrent builds (the second
 * waits for the first; see SharedRun for whose context a shared step reads). The first failure
 * cancels the rest of its build.
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
    const [result] = await this.solveAll(graph, [graph.result], opts);
    return result as OpResult;
  }

  /**
   * The results of several outputs of one graph (a multi-platform build's, one per platform),
   * in one build: a vertex they share (a stage on $BUILDPLATFORM) is solved and shown once.
   * A null output is a scratch snapshot.
   */
  async solveAll(graph: DefinitionGraph, outputs: ReadonlyArray<OpInput | null>, opts: SolveOptions): Promise<OpResult[]> {
    const failFast = new AbortController();
    const signal = AbortSignal.any([opts.signal, failFast.signal]);
    // this build's turn at the step slots (see Semaphore)
    const state: BuildState = { graph, opts: { ...opts, signal }, group: {}, keys: new Map(), results: new Map(), failFast };
    try {
      const results = await Promise.all(outputs.map((o): Promise<OpResult> => (o === null ? Promise.resolve({ kind: 'snapshot', id: null }) : this.resultOf(state, o.digest))));
      // imported hits under a hit: cached, though nothing needed them loaded
      for (const keyed of await Promise.all(state.keys.values())) keyed.showCached?.();
      return results;
    } catch (err) {
      opts.signal.throwIfAborted();
      throw toBuildError(state.firstError ?? err);
    } finally {
      // Let every started branch settle before returning, so no step outlives its build (a
      // branch still running may start others: wait until none is new).
      let seen = -1;
      while (seen !== state.keys.size + state.results.size) {
        seen = state.keys.size + state.results.size;
        await Promise.allSettled([...state.keys.values(), ...state.results.values()]);
      }
    }
  }

  private keyOf(state: BuildState, digest: string): Promise<Keyed> {
    return memoized(state, state.keys, digest, () => this.computeKey(state, state.graph.vertices.get(digest) as Vertex));
  }

  private resultOf(state: BuildState, digest: string): Promise<OpResult> {
    return memoized(state, state.results, digest, () => this.computeResult(state, state.graph.vertices.get(digest) as Vertex));
  }

  private context(state: BuildState, vertex: Vertex): OpContext {
    const { opts } = state;
    return {
      locals: opts.locals,
      session: opts.session,
      signal: opts.signal,
      log: { write: (stream, data) => opts.onEvent({ type: 'log', vertex: vertex.digest, stream, data }) },
      group: state.group,
    };
  }

  private async computeKey(state: BuildState, vertex: Vertex): Promise<Keyed> {
    const { opts } = state;
    const inputDigests = opInputs(vertex.op).map((i) => i.digest);
    const inputs = await Promise.all(inputDigests.map((d) => this.keyOf(state, d)));
    opts.signal.throwIfAborted();
    const ctx = this.context(state, vertex);
    const started = Date.now();
    const emit = (extra: Partial<Extract<SolveEvent, { type: 'vertex' }>>): void =>
      opts.onEvent({ type: 'vertex', digest: vertex.digest, name: vertex.meta.name, cached: false, started, ...extra });
    return this.reported(vertex, emit, async () => {
      const { key, cacheable, parts } = await this.worker.cacheKey(vertex, inputs.map((i) => ({ key: i.key, result: i.result })), ctx);
      const inputNames = inputDigests.map((d) => state.graph.vertices.get(d)?.meta.name ?? d);
      const useCache = cacheable && !vertex.meta.ignoreCache;
      const step = parts && useCache ? stepIdentity(vertex.op.kind, vertex.meta.name, vertex.meta.range, inputNames) : undefined;
      const keyed: Keyed = { key, cacheable, ...(parts ? { parts } : {}), ...(step !== undefined ? { step } : {}), inputNames };
      // A local source only names a directory its build has already received: its "run" is
      // its key's companion, and takes no step slot (with one, a build's context would wait
      // behind other builds' steps).
      if (isLocalSource(vertex)) {
        emit({});
        const result = await this.worker.run(vertex, [], ctx);
        emit({ completed: Date.now() });
        return { ...keyed, result };
      }
      const hit = useCache ? await this.lookup(key) : undefined;
      const imported = useCache && hit === undefined ? opts.imports?.find((source) => source.has(key)) : undefined;
      if (hit === undefined && imported === undefined) {
        // Without imports a miss runs as soon as its key is known, as it always would have:
        // waiting for every key first would hold it behind, say, a download for a later ADD's
        // key. With imports, a step under an imported hit must not run, so results wait for
        // the output to ask for them.
        if (!opts.imports?.length) void this.resultOf(state, vertex.digest);
        return keyed;
      }
      if (step !== undefined && parts) await this.cache.recordStepKey(step, key, parts);
      if (hit !== undefined) {
        emit({ cached: true, completed: Date.now() });
        opts.onResult?.({ key, result: hit, description: vertex.meta.name, vertex: vertex.digest });
        return { ...keyed, result: hit };
      }
      // shown as cached once loaded, or at the end when nothing read it (see solve): a load
      // that fails runs the step instead, and progress must not have said CACHED before
      opts.onImported?.({ key, source: imported as CacheSource, description: vertex.meta.name });
      return { ...keyed, imported, showCached: () => emit({ cached: true, completed: Date.now() }) };
    });
  }

  private async computeResult(state: BuildState, vertex: Vertex): Promise<OpResult> {
    const { opts } = state;
    const keyed = await this.keyOf(state, vertex.digest);
    if (keyed.result !== undefined) return keyed.result;
    if (keyed.imported !== undefined) {
      const loaded = await this.load(keyed.imported, keyed.key, vertex, opts);
      if (loaded !== undefined) {
        keyed.showCached?.();
        keyed.showCached = undefined;
        return loaded;
      }
      // the import could not give it after all: the step runs as if it had missed
      keyed.showCached = undefined;
    }
    const inputs = await Promise.all(opInputs(vertex.op).map((i) => this.resultOf(state, i.digest)));
    opts.signal.throwIfAborted();
    const started = Date.now();
    const emit = (extra: Partial<Extract<SolveEvent, { type: 'vertex' }>>): void =>
      opts.onEvent({ type: 'vertex', digest: vertex.digest, name: vertex.meta.name, cached: false, started, ...extra });
    return this.reported(vertex, emit, async () => {
      emit({});
      const { key, cacheable, parts, step } = keyed;
      if (step !== undefined && parts) {
        const cacheMiss = await this.explain(step, key, parts, keyed.inputNames);
        if (cacheMiss !== undefined) emit({ cacheMiss });
      }
      const result = await this.runShared(key, cacheable, vertex, inputs, this.context(state, vertex));
      emit({ completed: Date.now() });
      if (step !== undefined && parts) await this.cache.recordStepKey(step, key, parts);
      if (cacheable && result.kind === 'snapshot') opts.onResult?.({ key, result, description: vertex.meta.name, vertex: vertex.digest });
      return result;
    });
  }

  /** An imported result, downloaded now; undefined when the import fails (the step then runs). */
  private async load(source: CacheSource, key: string, vertex: Vertex, opts: SolveOptions): Promise<OpResult | undefined> {
    try {
      const result = await source.load(key, opts.signal);
      opts.onResult?.({ key, result, description: vertex.meta.name, vertex: vertex.digest });
      return result;
    } catch (err) {
      opts.signal.throwIfAborted();
      this.log?.info({ step: vertex.meta.name, key, cache: source.name, err: (err as Error).message }, 'an imported cache result could not be loaded: the step runs');
      return undefined;
    }
  }

  /** Runs `work` for `vertex`, reporting a failure on the vertex (the client names the failed step and its Dockerfile lines from it). */
  private async reported<T>(vertex: Vertex, emit: (extra: Partial<Extract<SolveEvent, { type: 'vertex' }>>) => void, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      const cause = toBuildError(err);
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
    if (!cacheable) return this.runLimited(vertex, inputs, ctx);
    let run = this.inflight.get(key);
    if (!run) {
      const step = vertex.meta.name;
      const created = new SharedRun(
        async (shared, sharedInputs) => {
          let recorded: string | undefined;
          const record = (snapshot: string | null): void => {
            this.cache.write({ key, snapshot, createdAt: new Date().toISOString(), description: step });
            if (snapshot !== null) recorded = snapshot;
          };
          const result = await this.runLimited(vertex, sharedInputs, { ...shared, recordCommit: record });
          // a result the worker did not commit (an input passed through, nothing changed)
          if (result.kind === 'snapshot' && (result.id === null || result.id !== recorded)) record(result.id);
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

/** The memo entry of `digest` in `memo`, made by `make` once; its failure cancels the rest of the build. */
function memoized<T>(state: BuildState, memo: Map<string, Promise<T>>, digest: string, make: () => Promise<T>): Promise<T> {
  let p = memo.get(digest);
  if (!p) {
    p = make();
    // Keep the first failure as the build's error; siblings then see an abort.
    p.catch((err: unknown) => {
      // the first failure is the build's error: the abort below makes the others fail too
      if (!state.failFast.signal.aborted) state.firstError ??= err;
      state.failFast.abort(new BuildError('cancelled', 'Cannot continue: another step failed'));
    });
    memo.set(digest, p);
  }
  return p;
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
