import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildWorker } from '../../buildd/worker/build-worker';
import { ImagePuller } from '../../buildd/worker/image-puller';
import { LayerIndex } from '../../store/layer-index';
import { RuncExecutor } from '../../buildd/worker/runc-executor';
import { CacheStore } from '../../solver/cache-store';
import { loadDefinition } from '../../solver/definition-graph';
import { type Op, opDigest } from '../../solver/op';
import { Solver } from '../../solver/solver';
import type { OpResult } from '../../solver/worker';
import { LocalContentStore } from '../../store/content-store';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { RegistryClient } from '../../store/registry-client';
import { SessionRegistries } from '../../buildd/session/session-registries';
import { cleanupRoot } from '../helpers/store-mounts';

let root: string;
let server: http.Server;
let url: string;
let body = 'payload v1\n';
let gets = 0;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-http-src-'));
  server = http.createServer((req, res) => {
    gets += 1;
    res.writeHead(200, { 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files/payload.txt`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await cleanupRoot(root);
});

/** One daemon's worth of stores and worker on `root`, opened as buildd opens them at start. */
async function startDaemon(): Promise<{ solver: Solver; snapshotter: OverlaySnapshotter }> {
  const snapshotter = await OverlaySnapshotter.open(root);
  const cache = await CacheStore.open(root);
  const content = await LocalContentStore.open(path.join(root, 'content'));
  const tmpDir = path.join(root, 'tmp');
  await fsp.mkdir(tmpDir, { recursive: true });
  // Real collaborators; an ADD-only graph never runs a container or pulls an image.
  const executor = new RuncExecutor({ runcRoot: path.join(root, 'runc'), stateDir: path.join(root, 'bundles') });
  const puller = new ImagePuller({ registries: new SessionRegistries(new RegistryClient()), content, snapshotter, cache, layers: await LayerIndex.open(root) });
  const worker = new BuildWorker({ snapshotter, executor, puller, tmpDir, content });
  return { solver: new Solver(worker, cache, { maxParallelism: 2 }), snapshotter };
}

async function build(solver: Solver): Promise<{ result: OpResult; cached: boolean }> {
  const op: Op = { kind: 'source', identifier: url, attrs: {} };
  const digest = opDigest(op);
  const graph = loadDefinition({ ops: [{ digest, op, meta: { name: `ADD ${url}` } }], result: { digest, index: 0 } });
  let cached = false;
  const result = await solver.solve(graph, {
    locals: {},
    signal: new AbortController().signal,
    onEvent: (e) => {
      if (e.type === 'vertex' && e.completed !== undefined) cached = e.cached;
    },
  });
  return { result, cached };
}

/** Snapshot directories on disk: committed and active alike, so a leak of either shows. */
async function snapshotDirs(): Promise<string[]> {
  return (await fsp.readdir(path.join(root, 'snapshots'))).filter((n) => n !== 'empty' && n !== 'views').sort();
}

async function fileOf(snapshotter: OverlaySnapshotter, result: OpResult): Promise<string> {
  if (result.kind !== 'snapshot' || result.id === null) throw new Error(`Cannot read result: ${JSON.stringify(result)}`);
  const view = await snapshotter.mountView(result.id);
  try {
    return await fsp.readFile(path.join(view.path, 'payload.txt'), 'utf8');
  } finally {
    await view.release();
  }
}

describe('ADD <url> without a checksum across builds', () => {
  test('same content after a restart hits the cache and commits no snapshot; changed content re-runs', async () => {
    const first = await startDaemon();
    const one = await build(first.solver);
    expect(one.cached).toBe(false);
    expect(await fileOf(first.snapshotter, one.result)).toBe('payload v1\n');
    const afterFirst = await snapshotDirs();
    expect(afterFirst).toHaveLength(1);

    // A restart: new stores and a new worker on the same root, nothing kept in memory.
    const second = await startDaemon();
    const getsBefore = gets;
    const two = await build(second.solver);
    expect(gets).toBe(getsBefore + 1); // the remote is still checked, as BuildKit does
    expect(two.cached).toBe(true);
    expect(two.result).toEqual(one.result);
    expect(await snapshotDirs()).toEqual(afterFirst);
    // The same worker again: still nothing new.
    expect((await build(second.solver)).cached).toBe(true);
    expect(await snapshotDirs()).toEqual(afterFirst);

    body = 'payload v2\n';
    const three = await build(second.solver);
    expect(three.cached).toBe(false);
    expect(three.result).not.toEqual(one.result);
    expect(await fileOf(second.snapshotter, three.result)).toBe('payload v2\n');
    expect(await snapshotDirs()).toHaveLength(2);
  });
});
