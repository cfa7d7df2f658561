import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { CacheStore } from '../../../solver/cache-store';
import { sha256Digest } from '../../../solver/canonical-json';
import { loadDefinition, Vertex } from '../../../solver/definition-graph';
import { Op, opDigest } from '../../../solver/op';
import { Solver, SolveEvent } from '../../../solver/solver';
import { OpContext, OpResult, Worker } from '../../../solver/worker';
import type { CacheSource } from '../../../solver/cache-source';

/**
 * A worker whose ops "run" by counting, so the scheduler's choices can be observed. A local
 * source names its build's directory as the real worker does; another op records the local
 * directories among its inputs as it starts and, as a COPY would, fails at its end when one
 * of them was removed meanwhile (`removed` stands for the daemon removing a build's session).
 */
class CountingWorker implements Worker {
  runs = new Map<string, number>();
  running = 0;
  maxRunning = 0;
  failOn = new Set<string>();
  gates: Array<() => void> = [];
  gate = false;
  /** the local directories each run read, in the order the runs started */
  reads: string[][] = [];
  removed = new Set<string>();
  /** finish a run even when its signal aborted (as a copy past its last abort check does) */
  ignoreAbort = false;

  async cacheKey(vertex: Vertex, inputs: Array<{ key: string }>): Promise<{ key: string; cacheable: boolean }> {
    if (localName(vertex) !== undefined) return { key: sha256Digest(vertex.digest), cacheable: false };
    return { key: sha256Digest(vertex.digest + inputs.map((i) => i.key).join()), cacheable: true };
  }

  async run(vertex: Vertex, inputs: OpResult[], ctx: OpContext): Promise<OpResult> {
    this.runs.set(vertex.meta.name, (this.runs.get(vertex.meta.name) ?? 0) + 1);
    const local = localName(vertex);
    if (local !== undefined) return { kind: 'local', name: local, dir: ctx.locals[local] as string };
    ctx.log.write(1, Buffer.from(`output of ${vertex.meta.name}\n`));
    const dirs = inputs.flatMap((i) => (i.kind === 'local' ? [i.dir] : []));
    this.reads.push(dirs);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      if (this.gate) await new Promise<void>((resolve) => this.gates.push(resolve));
      else await new Promise((resolve) => setImmediate(resolve));
      if (!this.ignoreAbort) ctx.signal.throwIfAborted();
      for (const d of dirs) if (this.removed.has(d)) throw new Error(`Cannot copy data: ${d} was removed`);
      if (this.failOn.has(vertex.meta.name)) throw new Error(`step ${vertex.meta.name} failed`);
      return { kind: 'snapshot', id: `snap-${vertex.meta.name}` };
    } finally {
      this.running--;
    }
  }

  async exists(): Promise<boolean> {
    return true;
  }
}

/** A CountingWorker whose key of the vertex named `slow` is held until `releaseKey` (an ADD's download). */
class SlowKeyWorker extends CountingWorker {
  private release: () => void = () => undefined;
  private readonly held = new Promise<void>((resolve) => (this.release = resolve));

  releaseKey(): void {
    this.release();
  }

  override async cacheKey(vertex: Vertex, inputs: Array<{ key: string }>): Promise<{ key: string; cacheable: boolean }> {
    if (vertex.meta.name === 'slow') await this.held;
    return super.cacheKey(vertex, inputs);
  }
}

/** a and b on one branch, `slow` (whose key is held) on another, `out` reading both */
const slowKeySpec = [
  { name: 'a', deps: [] },
  { name: 'b', deps: ['a'] },
  { name: 'slow', deps: [] },
  { name: 'out', deps: ['b', 'slow'] },
];

function localName(vertex: Vertex): string | undefined {
  return vertex.op.kind === 'source' && vertex.op.identifier.startsWith('local://') ? vertex.op.identifier.slice('local://'.length) : undefined;
}

/** `COPY data /data` from the local `context` onto scratch, as the Dockerfile frontend makes it. */
function copyFromContext() {
  const source: Op = { kind: 'source', identifier: 'local://context', attrs: {} };
  const copy: Op = {
    kind: 'file',
    inputs: [{ digest: opDigest(source), index: 0 }],
    base: -1,
    actions: [{ type: 'copy', src: 0, srcPaths: ['data'], dest: '/data' }],
  };
  return {
    ops: [
      { digest: opDigest(source), op: source, meta: { name: 'context' } },
      { digest: opDigest(copy), op: copy, meta: { name: 'copy' } },
    ],
    result: { digest: opDigest(copy), index: 0 },
  };
}

/** Lets queued callbacks run until `done` holds, or fails after a deadline. */
async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Cannot wait for ${what}: not reached in 5 s`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Lets every callback already queued (and those they queue) run, `n` turns of the event loop. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Whether a promise has settled, as seen from the test. */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { promise: p, settled: () => settled };
}

function graphOf(spec: Array<{ name: string; deps: string[] }>) {
  const digests = new Map<string, string>();
  const ops: Array<{ digest: string; op: Op; meta: { name: string } }> = [];
  for (const { name, deps } of spec) {
    const op: Op = {
      kind: 'exec',
      inputs: deps.map((d) => ({ digest: digests.get(d) as string, index: 0 })),
      meta: { args: ['echo', name], env: [], cwd: '/', user: '' },
      mounts: [{ input: deps.length ? 0 : -1, dest: '/', output: 0, readonly: false }],
      network: 'sandbox',
    };
    const digest = opDigest(op);
    digests.set(name, digest);
    ops.push({ digest, op, meta: { name } });
  }
  return { ops, result: { digest: ops[ops.length - 1].digest, index: 0 } };
}

describe('Solver', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'solver-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const diamond = [
    { name: 'a', deps: [] },
    { name: 'b', deps: ['a'] },
    { name: 'c', deps: ['a'] },
    { name: 'd', deps: ['b', 'c'] },
  ];

  test('runs a shared input once and returns the result of the output op', async () => {
    const worker = new CountingWorker();
    const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
    const result = await solver.solve(loadDefinition(graphOf(diamond)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    expect(result).toEqual({ kind: 'snapshot', id: 'snap-d' });
    expect(Object.fromEntries(worker.runs)).toEqual({ a: 1, b: 1, c: 1, d: 1 });
  });

  test('runs independent branches in parallel, never more than maxParallelism at once', async () => {
    const worker = new CountingWorker();
    const wide = [...Array.from({ length: 6 }, (_, i) => ({ name: `leaf${i}`, deps: [] as string[] })), { name: 'join', deps: ['leaf0', 'leaf1', 'leaf2', 'leaf3', 'leaf4', 'leaf5'] }];
    const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 3 });
    await solver.solve(loadDefinition(graphOf(wide)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    expect(worker.maxRunning).toBe(3);
    expect(worker.runs.size).toBe(7);
  });

  test('a second solve with nothing changed runs no step and marks every vertex cached, also with a reopened cache', async () => {
    const first = new CountingWorker();
    await new Solver(first, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(diamond)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    const second = new CountingWorker();
    const events: SolveEvent[] = [];
    const result = await new Solver(second, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(diamond)), {
      locals: {},
      onEvent: (e) => events.push(e),
      signal: new AbortController().signal,
    });
    expect(second.runs.size).toBe(0);
    expect(result).toEqual({ kind: 'snapshot', id: 'snap-d' });
    const done = events.filter((e) => e.type === 'vertex' && e.completed !== undefined);
    expect(done).toHaveLength(4);
    expect(done.every((e) => e.type === 'vertex' && e.cached)).toBe(true);
  });

  describe('imported caches', () => {
    const chain = [
      { name: 'a', deps: [] },
      { name: 'b', deps: ['a'] },
      { name: 'c', deps: ['b'] },
    ];

    /** An import holding the keys of `names` (as CountingWorker makes them); counts its loads. */
    async function importOf(names: string[]): Promise<CacheSource & { loads: string[]; failing: Set<string> }> {
      // the keys a first solve on another daemon computed, recorded as a cache export sees them
      const exported = new Map<string, string>();
      const other = mkdtempSync(path.join(tmpdir(), 'solver-other-'));
      try {
        await new Solver(new CountingWorker(), await CacheStore.open(other), { maxParallelism: 2 }).solve(loadDefinition(graphOf(chain)), {
          locals: {},
          onEvent: () => undefined,
          signal: new AbortController().signal,
          onResult: (s) => {
            if (names.includes(s.description)) exported.set(s.key, s.description);
          },
        });
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
      const loads: string[] = [];
      const failing = new Set<string>();
      return {
        name: 'test import',
        loads,
        failing,
        has: (key) => exported.has(key),
        load: async (key) => {
          const name = exported.get(key) as string;
          loads.push(name);
          if (failing.has(name)) throw new Error(`Cannot load ${name}: the registry is gone`);
          return { kind: 'snapshot', id: `imported-${name}` };
        },
      };
    }

    test('a hit on the output is loaded alone: the steps under it are neither run nor loaded, and all show as cached', async () => {
      const imported = await importOf(['a', 'b', 'c']);
      const worker = new CountingWorker();
      const events: SolveEvent[] = [];
      const results: string[] = [];
      const result = await new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(chain)), {
        locals: {},
        onEvent: (e) => events.push(e),
        signal: new AbortController().signal,
        imports: [imported],
        onResult: (s) => results.push(s.description),
      });
      expect(result).toEqual({ kind: 'snapshot', id: 'imported-c' });
      expect(worker.runs.size).toBe(0);
      expect(imported.loads).toEqual(['c']);
      expect(results).toEqual(['c']);
      const cached = events.filter((e) => e.type === 'vertex' && e.cached).map((e) => e.type === 'vertex' && e.name);
      expect(cached.sort()).toEqual(['a', 'b', 'c']);
    });

    test('a miss reads the imported result of its input; what lies under that import is not touched', async () => {
      const imported = await importOf(['a', 'b']);
      const worker = new CountingWorker();
      await new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(chain)), {
        locals: {},
        onEvent: () => undefined,
        signal: new AbortController().signal,
        imports: [imported],
      });
      expect(Object.fromEntries(worker.runs)).toEqual({ c: 1 });
      expect(imported.loads).toEqual(['b']);
    });

    test('an imported result that cannot be loaded is run instead, with what it needs', async () => {
      const imported = await importOf(['a', 'b', 'c']);
      imported.failing.add('c');
      const worker = new CountingWorker();
      const events: SolveEvent[] = [];
      const result = await new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(chain)), {
        locals: {},
        onEvent: (e) => events.push(e),
        signal: new AbortController().signal,
        imports: [imported],
      });
      expect(result).toEqual({ kind: 'snapshot', id: 'snap-c' });
      expect(Object.fromEntries(worker.runs)).toEqual({ c: 1 });
      expect(imported.loads).toEqual(['c', 'b']);
      // progress never said c was cached: it ran
      expect(events.some((e) => e.type === 'vertex' && e.name === 'c' && e.cached)).toBe(false);
      expect(events.some((e) => e.type === 'vertex' && e.name === 'b' && e.cached)).toBe(true);
    });

    test("the daemon's own cache comes first: a local hit is never loaded from an import", async () => {
      await new Solver(new CountingWorker(), await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(chain)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
      const imported = await importOf(['a', 'b', 'c']);
      const worker = new CountingWorker();
      const results: string[] = [];
      await new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(chain)), {
        locals: {},
        onEvent: () => undefined,
        signal: new AbortController().signal,
        imports: [imported],
        onResult: (s) => results.push(s.description),
      });
      expect(worker.runs.size).toBe(0);
      expect(imported.loads).toEqual([]);
      // every local hit is on disk, so a cache export can include each
      expect(results.sort()).toEqual(['a', 'b', 'c']);
    });
  });

  test('without imports a miss runs at once: a key that takes long (a download for an ADD) does not hold other steps back', async () => {
    const worker = new SlowKeyWorker();
    const solving = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(slowKeySpec)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    await until('a and b to run while the key of slow is held', () => worker.runs.get('b') === 1);
    expect(worker.runs.has('out')).toBe(false);
    worker.releaseKey();
    await solving;
    expect(Object.fromEntries(worker.runs)).toEqual({ a: 1, b: 1, slow: 1, out: 1 });
  });

  test("a step that fails while another step's key is still being made fails the build with its own error", async () => {
    const worker = new SlowKeyWorker();
    worker.failOn.add('b');
    const solving = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(slowKeySpec)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    const settled = solving.catch((err: unknown) => err);
    await until('b to fail', () => worker.runs.get('b') === 1);
    worker.releaseKey();
    expect(((await settled) as Error).message).toBe('step b failed');
  });

  test('ignoreCache runs the step even when a record exists', async () => {
    await new Solver(new CountingWorker(), await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(graphOf(diamond)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    const def = graphOf(diamond);
    for (const o of def.ops) (o.meta as { ignoreCache?: boolean }).ignoreCache = true;
    const worker = new CountingWorker();
    await new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 }).solve(loadDefinition(def), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal });
    expect(worker.runs.size).toBe(4);
  });

  test('a failing step fails the solve with its message and reports the error on its vertex', async () => {
    const worker = new CountingWorker();
    worker.failOn.add('b');
    const events: SolveEvent[] = [];
    const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 2 });
    await expect(
      solver.solve(loadDefinition(graphOf(diamond)), { locals: {}, onEvent: (e) => events.push(e), signal: new AbortController().signal }),
    ).rejects.toMatchObject({ code: 'internal', message: 'step b failed' });
    expect(worker.runs.get('d')).toBeUndefined();
    expect(events.some((e) => e.type === 'vertex' && e.name === 'b' && e.error === 'step b failed')).toBe(true);
    const failed = await solver.solve(loadDefinition(graphOf(diamond)), { locals: {}, onEvent: () => undefined, signal: new AbortController().signal }).catch((e: unknown) => e);
    expect(failed).toMatchObject({ vertex: graphOf(diamond).ops[1].digest });
  });

  test('two concurrent solves of the same graph share each step', async () => {
    const worker = new CountingWorker();
    worker.gate = true;
    const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
    const opts = { locals: {}, onEvent: () => undefined, signal: new AbortController().signal };
    const both = Promise.all([solver.solve(loadDefinition(graphOf(diamond)), opts), solver.solve(loadDefinition(graphOf(diamond)), opts)]);
    const deadline = Date.now() + 5000;
    while (Object.keys(Object.fromEntries(worker.runs)).length < 4 || worker.gates.length > 0) {
      if (Date.now() > deadline) throw new Error('steps did not finish');
      const open = worker.gates.splice(0);
      open.forEach((g) => g());
      await new Promise((resolve) => setImmediate(resolve));
    }
    await both;
    expect(Object.fromEntries(worker.runs)).toEqual({ a: 1, b: 1, c: 1, d: 1 });
  });

  test('a build cancelled while another shares its step does not cancel the step; the other gets its result and output', async () => {
    const worker = new CountingWorker();
    worker.gate = true;
    const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
    const first = new AbortController();
    const logsOf = (events: SolveEvent[]) => events.filter((e) => e.type === 'log').map((e) => (e.type === 'log' ? e.data.toString() : ''));
    const firstEvents: SolveEvent[] = [];
    const secondEvents: SolveEvent[] = [];
    const one = solver.solve(loadDefinition(graphOf([{ name: 'a', deps: [] }])), { locals: {}, onEvent: (e) => firstEvents.push(e), signal: first.signal });
    const two = solver.solve(loadDefinition(graphOf([{ name: 'a', deps: [] }])), { locals: {}, onEvent: (e) => secondEvents.push(e), signal: new AbortController().signal });
    const deadline = Date.now() + 5000;
    // The second build has joined the shared run once the step's output was replayed to it.
    while (worker.gates.length === 0 || !secondEvents.some((e) => e.type === 'log')) {
      if (Date.now() > deadline) throw new Error('step never started');
      await new Promise((resolve) => setImmediate(resolve));
    }
    const gone = new BuildError('cancelled', 'Cannot continue: the client went away');
    first.abort(gone);
    await expect(one).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
    worker.gates.splice(0).forEach((g) => g());
    await expect(two).resolves.toEqual({ kind: 'snapshot', id: 'snap-a' });
    expect(worker.runs.get('a')).toBe(1);
    expect(logsOf(secondEvents)).toEqual(['output of a\n']);
  });

  describe('a COPY from the context shared by two builds', () => {
    const cancelled = (): BuildError => new BuildError('cancelled', 'Cannot continue: the client went away');
    const logsOf = (events: SolveEvent[]): string[] => events.flatMap((e) => (e.type === 'log' ? [e.data.toString()] : []));
    /** A solve of copyFromContext with the build's own context dir; its dir is removed when it settles, as the daemon does. */
    function build(solver: Solver, worker: CountingWorker, dir: string, signal: AbortSignal, events: SolveEvent[] = []) {
      const p = solver.solve(loadDefinition(copyFromContext()), { locals: { context: dir }, onEvent: (e) => events.push(e), signal });
      void p.then(
        () => worker.removed.add(dir),
        () => worker.removed.add(dir),
      );
      return tracked(p);
    }

    test('a local source takes no step slot: a build gets its context while another build holds every slot', async () => {
      const worker = new CountingWorker();
      worker.gate = true;
      const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 1 });
      const signal = new AbortController().signal;
      const holder = solver.solve(loadDefinition(graphOf([{ name: 'a', deps: [] }])), { locals: {}, onEvent: () => undefined, signal });
      await until('step a to hold the slot', () => worker.gates.length === 1);
      const copy = build(solver, worker, '/ctx1', signal);
      await until('the context to be given', () => worker.runs.get('context') === 1);
      expect(worker.runs.get('copy')).toBeUndefined();
      worker.gates.splice(0).forEach((g) => g());
      await until('the copy to start', () => worker.gates.length === 1);
      worker.gates.splice(0).forEach((g) => g());
      await expect(holder).resolves.toEqual({ kind: 'snapshot', id: 'snap-a' });
      await expect(copy.promise).resolves.toEqual({ kind: 'snapshot', id: 'snap-copy' });
    });

    test('when the build whose context the step reads is cancelled, the step runs again from the context of the build still waiting', async () => {
      const worker = new CountingWorker();
      worker.gate = true;
      const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
      const first = new AbortController();
      const secondEvents: SolveEvent[] = [];
      const one = build(solver, worker, '/ctx1', first.signal);
      // the first build owns the run: its copy started before the second build asks for it
      await until('the copy to start from the first context', () => worker.gates.length === 1);
      const two = build(solver, worker, '/ctx2', new AbortController().signal, secondEvents);
      // The second build has joined once the step's output was replayed to it.
      await until('the second build to join the copy', () => worker.gates.length === 1 && logsOf(secondEvents).length === 1);
      expect(worker.reads).toEqual([['/ctx1']]);
      first.abort(cancelled());
      // The first build is not done while the step still reads its context.
      await turns(10);
      expect(one.settled()).toBe(false);
      worker.gates.splice(0).forEach((g) => g());
      await expect(one.promise).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
      expect(worker.removed.has('/ctx1')).toBe(true);
      await until('the second attempt to start', () => worker.gates.length === 1);
      worker.gates.splice(0).forEach((g) => g());
      await expect(two.promise).resolves.toEqual({ kind: 'snapshot', id: 'snap-copy' });
      expect(worker.reads).toEqual([['/ctx1'], ['/ctx2']]);
      expect(worker.runs.get('copy')).toBe(2);
      // Each attempt's output reached the build still waiting.
      expect(logsOf(secondEvents)).toEqual(['output of copy\n', 'output of copy\n']);
    });

    test('a step that finishes though the build whose context it read left gives its result to the others', async () => {
      const worker = new CountingWorker();
      worker.gate = true;
      worker.ignoreAbort = true;
      const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
      const first = new AbortController();
      const secondEvents: SolveEvent[] = [];
      const one = build(solver, worker, '/ctx1', first.signal);
      // the first build owns the run: its copy started before the second build asks for it
      await until('the copy to start from the first context', () => worker.gates.length === 1);
      const two = build(solver, worker, '/ctx2', new AbortController().signal, secondEvents);
      await until('the second build to join the copy', () => worker.gates.length === 1 && logsOf(secondEvents).length === 1);
      first.abort(cancelled());
      worker.gates.splice(0).forEach((g) => g());
      await expect(one.promise).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
      await expect(two.promise).resolves.toEqual({ kind: 'snapshot', id: 'snap-copy' });
      expect(worker.reads).toEqual([['/ctx1']]);
    });

    test('cancelling the only build waiting on the step aborts it, and the solve settles once the step has stopped', async () => {
      const worker = new CountingWorker();
      worker.gate = true;
      const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
      const first = new AbortController();
      const one = build(solver, worker, '/ctx1', first.signal);
      await until('the copy to start', () => worker.gates.length === 1);
      first.abort(cancelled());
      await turns(10);
      expect(one.settled()).toBe(false);
      worker.gates.splice(0).forEach((g) => g());
      await expect(one.promise).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
      expect(worker.runs.get('copy')).toBe(1);
      // Nothing was cached: the same build again runs the step.
      worker.gate = false;
      await expect(build(solver, worker, '/ctx3', new AbortController().signal).promise).resolves.toEqual({ kind: 'snapshot', id: 'snap-copy' });
      expect(worker.reads).toEqual([['/ctx1'], ['/ctx3']]);
    });

    test('a build that joins a step whose only build just left runs it again from its own context', async () => {
      const worker = new CountingWorker();
      worker.gate = true;
      const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 4 });
      const first = new AbortController();
      const secondEvents: SolveEvent[] = [];
      const one = build(solver, worker, '/ctx1', first.signal);
      await until('the copy to start', () => worker.gates.length === 1);
      first.abort(cancelled());
      // The aborted attempt has not stopped yet (its gate is closed) when the second build joins.
      const two = build(solver, worker, '/ctx2', new AbortController().signal, secondEvents);
      await until('the second build to join the copy', () => logsOf(secondEvents).length === 1);
      worker.gates.splice(0).forEach((g) => g());
      await expect(one.promise).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
      await until('the second attempt to start', () => worker.gates.length === 1);
      worker.gates.splice(0).forEach((g) => g());
      await expect(two.promise).resolves.toEqual({ kind: 'snapshot', id: 'snap-copy' });
      expect(worker.reads).toEqual([['/ctx1'], ['/ctx2']]);
    });
  });

  test('cancelling the build rejects the solve', async () => {
    const worker = new CountingWorker();
    worker.gate = true;
    const ac = new AbortController();
    const solver = new Solver(worker, await CacheStore.open(dir), { maxParallelism: 1 });
    const p = solver.solve(loadDefinition(graphOf(diamond)), { locals: {}, onEvent: () => undefined, signal: ac.signal });
    const deadline = Date.now() + 5000;
    while (worker.gates.length === 0) {
      if (Date.now() > deadline) throw new Error('step never started');
      await new Promise((resolve) => setImmediate(resolve));
    }
    ac.abort(new BuildError('cancelled', 'Cannot continue: the client went away'));
    worker.gates.splice(0).forEach((g) => g());
    await expect(p).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
    expect(worker.runs.has('d')).toBe(false);
  });
});

describe('loadDefinition', () => {
  test('rejects an op whose digest does not match its content', () => {
    const def = graphOf([{ name: 'a', deps: [] }]);
    def.ops[0].digest = 'sha256:' + '0'.repeat(64);
    def.result.digest = def.ops[0].digest;
    expect(() => loadDefinition(def)).toThrow(/has digest sha256:/);
  });

  test('rejects an input position out of range', () => {
    const def = graphOf([{ name: 'a', deps: [] }]);
    const op = def.ops[0].op as Extract<Op, { kind: 'exec' }>;
    op.mounts[0].input = 2;
    def.ops[0].digest = opDigest(op);
    def.result.digest = def.ops[0].digest;
    expect(() => loadDefinition(def)).toThrow(/input position 2 of 0/);
  });

  test('rejects a reference to a missing op', () => {
    const def = graphOf([{ name: 'a', deps: [] }, { name: 'b', deps: ['a'] }]);
    def.ops.shift();
    expect(() => loadDefinition(def)).toThrow(/refers to missing op/);
  });
});
