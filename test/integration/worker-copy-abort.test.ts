import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildWorker } from '../../buildd/worker/build-worker';
import { ImagePuller } from '../../buildd/worker/image-puller';
import { RuncExecutor } from '../../buildd/worker/runc-executor';
import { BuildError } from '../../solver/build-error';
import { CacheStore } from '../../solver/cache-store';
import { loadDefinition, type Vertex } from '../../solver/definition-graph';
import { type Op, opDigest } from '../../solver/op';
import { LocalContentStore } from '../../store/content-store';
import { LayerIndex } from '../../store/layer-index';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { RegistryClient } from '../../store/registry-client';
import { SessionRegistries } from '../../buildd/session/session-registries';
import { cleanupRoot } from '../helpers/store-mounts';
import { abortAtCheck } from '../helpers/abort-at-check';

const FILES = 40;

/** `COPY many /out/` from the local `context` onto scratch, as the Dockerfile frontend makes it. */
function copyVertex(): Vertex {
  const source: Op = { kind: 'source', identifier: 'local://context', attrs: {} };
  const copy: Op = { kind: 'file', inputs: [{ digest: opDigest(source), index: 0 }], base: -1, actions: [{ type: 'copy', src: 0, srcPaths: ['many'], dest: '/out/' }] };
  const graph = loadDefinition({
    ops: [
      { digest: opDigest(source), op: source, meta: { name: 'context' } },
      { digest: opDigest(copy), op: copy, meta: { name: 'COPY many /out/' } },
    ],
    result: { digest: opDigest(copy), index: 0 },
  });
  return graph.vertices.get(opDigest(copy)) as Vertex;
}

describe('BuildWorker: a COPY whose step is aborted while it copies', () => {
  let root: string;
  let ctx: string;
  let snapshotter: OverlaySnapshotter;
  let worker: BuildWorker;

  beforeAll(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-worker-abort-'));
    ctx = path.join(root, 'session', 'context');
    await fsp.mkdir(path.join(ctx, 'many'), { recursive: true });
    for (let i = 0; i < FILES; i++) await fsp.writeFile(path.join(ctx, 'many', `f${String(i).padStart(3, '0')}`), `file ${i}\n`);
    snapshotter = await OverlaySnapshotter.open(root);
    const cache = await CacheStore.open(root);
    const content = await LocalContentStore.open(path.join(root, 'content'));
    const tmpDir = path.join(root, 'tmp');
    await fsp.mkdir(tmpDir, { recursive: true });
    // Real collaborators; a COPY never runs a container or pulls an image.
    const executor = new RuncExecutor({ runcRoot: path.join(root, 'runc'), stateDir: path.join(root, 'bundles') });
    const puller = new ImagePuller({ registries: new SessionRegistries(new RegistryClient()), content, snapshotter, cache, layers: await LayerIndex.open(root) });
    worker = new BuildWorker({ snapshotter, executor, puller, tmpDir, content });
  });

  afterAll(async () => {
    if (root) await cleanupRoot(root);
  });

  /** Snapshot directories on disk: committed and active alike. */
  async function snapshotDirs(): Promise<string[]> {
    return (await fsp.readdir(path.join(root, 'snapshots')).catch(() => [] as string[])).filter((n) => n !== 'empty' && n !== 'views').sort();
  }

  test('stops between files with the step\'s abort reason (it does not read the context to its end) and leaves no snapshot', async () => {
    const before = await snapshotDirs();
    // The step's check before its action is the first; the copy's own checks follow.
    const signal = abortAtCheck(5, new BuildError('cancelled', 'Cannot continue with this context: the build that lent it has left'));
    const local = { kind: 'local' as const, name: 'context', dir: ctx };
    await expect(worker.run(copyVertex(), [local], { locals: { context: ctx }, signal, log: { write: () => undefined } })).rejects.toMatchObject({
      code: 'cancelled',
      message: 'Cannot continue with this context: the build that lent it has left',
    });
    expect(await snapshotDirs()).toEqual(before);
  });

  test('the same COPY with a signal that never aborts commits every file', async () => {
    const local = { kind: 'local' as const, name: 'context', dir: ctx };
    const result = await worker.run(copyVertex(), [local], { locals: { context: ctx }, signal: new AbortController().signal, log: { write: () => undefined } });
    expect(result.kind).toBe('snapshot');
    const id = (result as { id: string }).id;
    const view = await snapshotter.mountView(id);
    try {
      expect(await fsp.readdir(path.join(view.path, 'out'))).toHaveLength(FILES);
    } finally {
      await view.release();
    }
  });
});
