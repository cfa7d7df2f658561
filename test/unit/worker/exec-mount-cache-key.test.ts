import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildWorker } from '../../../buildd/worker/build-worker';
import type { Executor } from '../../../buildd/worker/executor';
import type { ImagePuller } from '../../../buildd/worker/image-puller';
import { ExecMount, ExecOp, opDigest } from '../../../solver/op';
import type { OpContext, OpResult } from '../../../solver/worker';
import type { Snapshotter } from '../../../store/snapshotter';

/** cacheKey reads only the op and its inputs: the worker's other parts are never touched. */
function worker(tmpDir: string): BuildWorker {
  return new BuildWorker({ snapshotter: {} as Snapshotter, executor: {} as Executor, puller: {} as ImagePuller, tmpDir });
}

function execWith(mount: ExecMount): ExecOp {
  const digest = (c: string): string => 'sha256:' + c.repeat(64);
  return {
    kind: 'exec',
    inputs: [{ digest: digest('a'), index: 0 }, { digest: digest('b'), index: 0 }],
    meta: { args: ['/bin/sh', '-c', 'true'], env: [], cwd: '/', user: '' },
    mounts: [{ input: 0, dest: '/', output: 0, readonly: false }, mount],
    network: 'sandbox',
  };
}

describe('the cache key of a RUN with mounts', () => {
  let tmp: string;
  let ctxDir: string;
  const ctx = (): OpContext => ({ locals: {}, log: { write: () => undefined }, signal: new AbortController().signal });

  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-mount-key-'));
    ctxDir = path.join(tmp, 'context');
    await fsp.mkdir(path.join(ctxDir, 'src'), { recursive: true });
    await fsp.writeFile(path.join(ctxDir, 'src', 'a.txt'), 'one');
    await fsp.writeFile(path.join(ctxDir, 'other.txt'), 'x');
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  async function keyOf(mount: ExecMount): Promise<string> {
    const op = execWith(mount);
    const base: OpResult = { kind: 'snapshot', id: 'base' };
    const local: OpResult = { kind: 'local', name: 'context', dir: ctxDir };
    const key = await worker(tmp).cacheKey({ digest: opDigest(op), op, meta: { name: 'RUN' } }, [{ key: 'k-base', result: base }, { key: 'k-local', result: local }], ctx());
    return key.key;
  }

  test('includes the content of the bind source path, and only of that path', async () => {
    const bind: ExecMount = { input: 1, dest: '/src', output: -1, readonly: true, selector: '/src' };
    const before = await keyOf(bind);
    await fsp.writeFile(path.join(ctxDir, 'other.txt'), 'changed outside the source');
    expect(await keyOf(bind)).toBe(before);
    await fsp.writeFile(path.join(ctxDir, 'src', 'a.txt'), 'two');
    expect(await keyOf(bind)).not.toBe(before);
  });

  test('takes a bind source with glob characters literally: pages/[slug] is that directory, not a pattern', async () => {
    await fsp.mkdir(path.join(ctxDir, 'pages', '[slug]'), { recursive: true });
    await fsp.writeFile(path.join(ctxDir, 'pages', '[slug]', 'index.js'), 'one');
    await fsp.writeFile(path.join(ctxDir, 'pages', 's'), 'a file the pattern [slug] would match');
    const bind: ExecMount = { input: 1, dest: '/p', output: -1, readonly: true, selector: '/pages/[slug]' };
    const before = await keyOf(bind);
    await fsp.writeFile(path.join(ctxDir, 'pages', 's'), 'changed, but not in the source');
    expect(await keyOf(bind)).toBe(before);
    await fsp.writeFile(path.join(ctxDir, 'pages', '[slug]', 'index.js'), 'two');
    expect(await keyOf(bind)).not.toBe(before);
  });

  test('includes the whole context for a bind of its root, rw as well', async () => {
    const bind: ExecMount = { input: 1, dest: '/ctx', output: -1, readonly: false };
    const before = await keyOf(bind);
    await fsp.writeFile(path.join(ctxDir, 'other.txt'), 'changed');
    expect(await keyOf(bind)).not.toBe(before);
  });

  test('does not include the content of a cache mount or of the context a cache mount is seeded from', async () => {
    const cache: ExecMount = { input: 1, dest: '/c', output: -1, readonly: false, type: 'cache', selector: '/src', cache: { id: 'c', sharing: 'shared' } };
    const before = await keyOf(cache);
    await fsp.writeFile(path.join(ctxDir, 'src', 'a.txt'), 'two');
    expect(await keyOf(cache)).toBe(before);
    // but the cache's identity is part of the op, as in BuildKit's
    expect(await keyOf({ ...cache, cache: { id: 'other', sharing: 'shared' } })).not.toBe(before);
  });
});
