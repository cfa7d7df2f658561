import { BuildError } from '../../../solver/build-error';
import { loadDefinition } from '../../../solver/definition-graph';
import { Definition, ExecOp, FileOp, Op } from '../../../solver/op';
import { sizeInBytes } from '../../../frontend/run-mounts';
import { build } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';

function opByDigest(def: Definition, digest: string): Op {
  const found = def.ops.find((o) => o.digest === digest);
  if (!found) throw new Error(`no op ${digest}`);
  return found.op;
}
/** The exec op of the last RUN (the result). */
function lastExec(def: Definition): ExecOp {
  const op = opByDigest(def, def.result?.digest as string);
  if (op.kind !== 'exec') throw new Error(`result is a ${op.kind} op`);
  return op;
}
/** The op a mount's input refers to, or undefined for scratch. */
function inputOf(def: Definition, exec: ExecOp, input: number): Op | undefined {
  return input < 0 ? undefined : opByDigest(def, exec.inputs[input].digest);
}
async function failure(df: string): Promise<BuildError> {
  try {
    await build(df);
  } catch (err) {
    expect(err).toBeInstanceOf(BuildError);
    return err as BuildError;
  }
  throw new Error('the build did not fail');
}

describe('RUN --mount in the op graph (as LLB ExecOp mounts: each mount state is an input)', () => {
  test('a bind of the context is read-only by default, its source is the selector, the context is an input', async () => {
    const r = await build(`FROM ${BB}\nRUN --mount=type=bind,source=sub/dir,target=/ctx cat /ctx/f\n`);
    const exec = lastExec(r.definition);
    expect(exec.mounts).toEqual([
      { input: 0, dest: '/', output: 0, readonly: false },
      { input: 1, dest: '/ctx', output: -1, readonly: true, selector: '/sub/dir' },
    ]);
    expect(inputOf(r.definition, exec, 1)).toEqual({ kind: 'source', identifier: 'local://context', attrs: {} });
    expect(() => loadDefinition(r.definition)).not.toThrow();
  });

  test('a bind from a stage with rw, and one from an image, read those states', async () => {
    const r = await build(`FROM ${BB} AS src\nRUN echo x > /x\nFROM ${BB}\nRUN --mount=from=src,source=/x,target=/m/x,rw --mount=type=bind,from=${BB},target=/img cat /m/x\n`);
    const exec = lastExec(r.definition);
    const [, stage, image] = exec.mounts;
    expect(stage).toEqual({ input: 1, dest: '/m/x', output: -1, readonly: false, selector: '/x' });
    const stageOp = inputOf(r.definition, exec, stage.input);
    expect(stageOp?.kind === 'exec' && stageOp.meta.args).toEqual(['/bin/sh', '-c', 'echo x > /x']);
    expect(image).toEqual({ input: 0, dest: '/img', output: -1, readonly: true });
    // the image state is the stage's base: equal digests share one input, as LLB's do
    expect(inputOf(r.definition, exec, 0)).toMatchObject({ kind: 'source', identifier: `docker-image://${BB}` });
    expect(exec.inputs).toHaveLength(2);
  });

  test('a cache mount: id defaults to the target, sharing to shared; a relative target joins WORKDIR; no input without from or owner', async () => {
    const r = await build(`FROM ${BB}\nWORKDIR /w\nRUN --mount=type=cache,target=/root/.cache --mount=type=cache,target=rel,id=x,sharing=locked,ro true\n`);
    const exec = lastExec(r.definition);
    expect(exec.mounts.slice(1)).toEqual([
      { input: -1, dest: '/root/.cache', output: -1, readonly: false, type: 'cache', cache: { id: '/root/.cache', sharing: 'shared' } },
      { input: -1, dest: '/w/rel', output: -1, readonly: true, type: 'cache', cache: { id: 'x', sharing: 'locked' } },
    ]);
    expect(exec.inputs).toHaveLength(1);
  });

  test('a cache mount with uid, gid and mode is seeded from an internal mkdir on scratch, as BuildKit does', async () => {
    const r = await build(`FROM ${BB}\nRUN --mount=type=cache,target=/c,uid=1000,gid=1001,mode=0700,sharing=private true\n`);
    const exec = lastExec(r.definition);
    const cache = exec.mounts[1];
    expect(cache).toMatchObject({ input: 1, dest: '/c', type: 'cache', selector: '/cache', cache: { id: '/c', sharing: 'private' } });
    const mkdir = inputOf(r.definition, exec, cache.input) as FileOp;
    expect(mkdir).toEqual({
      kind: 'file', inputs: [], base: -1,
      actions: [{ type: 'mkdir', path: '/cache', mode: 0o700, makeParents: true, chown: { user: '1000', group: '1001' } }],
    });
    expect(r.definition.ops.find((o) => o.op === mkdir)?.meta.name).toBe('[internal] settings cache mount permissions');
  });

  test('a cache mount seeded from a stage subpath reads that stage', async () => {
    const r = await build(`FROM ${BB} AS seed\nRUN mkdir /s\nFROM ${BB}\nRUN --mount=type=cache,target=/c,from=seed,source=s true\n`);
    const exec = lastExec(r.definition);
    expect(exec.mounts[1]).toEqual({ input: 1, dest: '/c', output: -1, readonly: false, type: 'cache', selector: '/s', cache: { id: '/c', sharing: 'shared' } });
    expect(inputOf(r.definition, exec, 1)?.kind).toBe('exec');
  });

  test('target, source and id are expanded with the stage\'s ARG and ENV values; the default id is the expanded target', async () => {
    const r = await build(`FROM ${BB}\nARG PKG=npm\nENV HOME_DIR=/home/app\nRUN --mount=type=cache,target=$HOME_DIR/.cache/\${PKG} --mount=type=cache,id=c-$PKG,target=/x --mount=source=\${PKG}/lock,target=/l true\n`);
    const [, byTarget, byId, bind] = lastExec(r.definition).mounts;
    expect(byTarget).toMatchObject({ dest: '/home/app/.cache/npm', cache: { id: '/home/app/.cache/npm', sharing: 'shared' } });
    expect(byId).toMatchObject({ dest: '/x', cache: { id: 'c-npm' } });
    expect(bind).toMatchObject({ dest: '/l', selector: '/npm/lock' });
  });

  test('a tmpfs mount has no input and its size in bytes (go-units binary multiples)', async () => {
    const r = await build(`FROM ${BB}\nRUN --mount=type=tmpfs,target=/t,size=64m --mount=type=tmpfs,target=/u true\n`);
    expect(lastExec(r.definition).mounts.slice(1)).toEqual([
      { input: -1, dest: '/t', output: -1, readonly: false, type: 'tmpfs', tmpfs: { size: 64 * 1024 * 1024 } },
      { input: -1, dest: '/u', output: -1, readonly: false, type: 'tmpfs', tmpfs: { size: 0 } },
    ]);
    expect([sizeInBytes('1k'), sizeInBytes('2KiB'), sizeInBytes('1.5m'), sizeInBytes('10'), sizeInBytes('1GB')]).toEqual([1024, 2048, 1572864, 10, 1024 ** 3]);
  });

  test('secret and ssh mounts are lent by the session, not graph mounts; a mount from a later stage is an error with the line', async () => {
    const lent = await build(`FROM ${BB}\nRUN --mount=type=secret,id=t --mount=type=ssh --mount=type=tmpfs,target=/t true\n`);
    const exec = lastExec(lent.definition);
    expect(exec.mounts.map((m) => m.dest)).toEqual(['/', '/t']);
    expect(exec.secrets?.map((m) => m.id)).toEqual(['t']);
    expect(exec.ssh?.map((m) => m.id)).toEqual(['default']);
    const later = await failure(`FROM ${BB} AS a\nRUN --mount=from=b,target=/b true\nFROM ${BB} AS b\nFROM a\n`);
    expect(later.message).toMatch(/^Dockerfile:2:1: cannot mount from stage "b", it needs to be defined before current stage "a"/);
    const self = await failure(`FROM ${BB} AS a\nRUN --mount=from=a,target=/a true\n`);
    expect(self.message).toMatch(/^Dockerfile:1:1: circular dependency detected on stage: a/);
  });

  test('a stage only a mount reads is built (it is reachable from the target)', async () => {
    const r = await build(`FROM ${BB} AS only-mounted\nRUN echo m > /m\nFROM ${BB}\nRUN --mount=from=only-mounted,target=/o cat /o/m\n`);
    expect(r.definition.ops.some((o) => o.op.kind === 'exec' && o.op.meta.args.includes('echo m > /m'))).toBe(true);
  });
});

describe('the daemon checks exec mounts (it never trusts the frontend)', () => {
  async function definitionWith(change: (exec: ExecOp) => void): Promise<unknown> {
    const r = await build(`FROM ${BB}\nRUN --mount=type=cache,target=/c true\n`);
    const def = structuredClone(r.definition);
    const last = def.ops[def.ops.length - 1];
    change(last.op as ExecOp);
    // keep the digests right so that only the mount check can object
    const { opDigest } = await import('../../../solver/op');
    const oldDigest = last.digest;
    last.digest = opDigest(last.op);
    if (def.result?.digest === oldDigest) def.result.digest = last.digest;
    return def;
  }
  const reject = async (change: (exec: ExecOp) => void): Promise<string> => {
    const def = await definitionWith(change);
    try {
      loadDefinition(def);
    } catch (err) {
      expect(err).toBeInstanceOf(BuildError);
      expect((err as BuildError).code).toBe('invalid-argument');
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  test('an input position out of range, an output on a non-root mount, a tmpfs with an input, a cache without options, two roots', async () => {
    expect(await reject((e) => { e.mounts[1].input = 3; })).toMatch(/uses input position 3 of 1/);
    expect(await reject((e) => { e.mounts[1].output = 1; })).toMatch(/has an output for the mount at \/c; only the root mount has one/);
    expect(await reject((e) => { e.mounts[1].type = 'tmpfs'; delete e.mounts[1].cache; e.mounts[1].input = 0; })).toMatch(/gives an input to the tmpfs mount at \/c/);
    expect(await reject((e) => { delete e.mounts[1].cache; })).toMatch(/has cache options missing from the cache mount at \/c/);
    expect(await reject((e) => { e.mounts[1] = { ...e.mounts[0] }; })).toMatch(/mounts \/ twice/);
    expect(await reject((e) => { e.mounts[1].dest = '/c/../d'; })).toMatch(/not a clean absolute path/);
  });
});
