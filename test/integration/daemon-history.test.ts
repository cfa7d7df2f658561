import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';

jest.setTimeout(240_000);

/**
 * Build history against a real daemon: `buildctl debug histories` lists builds with their
 * status, outputs and cache ratio; `debug logs` replays one; both survive a restart; the
 * history keeps its count limit; a build the daemon never saw end shows as interrupted; and
 * `debug workers` describes the worker.
 */
let tmp: string;
let root: string;
let config: string;
let registry: TestRegistry;
let daemon: TestDaemon;
let base: string;

interface Record {
  ref: string;
  status: string;
  frontend: string;
  outputs: Array<{ type: string; attrs: { [k: string]: string } }>;
  error: string;
  steps: number;
  cached_steps: number;
  started_ms: number;
  completed_ms: number;
}

function ctl(args: string[]): Promise<RunResult> {
  return runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), ...args]);
}

function build(ctx: string, name: string): Promise<RunResult> {
  return ctl(['build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', '--output', `type=image,name=${name}`]);
}

async function histories(): Promise<Record[]> {
  const res = await ctl(['debug', 'histories', '--format', 'json']);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  return JSON.parse(res.stdout) as Record[];
}

function start(): Promise<TestDaemon> {
  return startDaemon({ builder: 'real', root, extraArgs: ['--config', config] });
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-history-'));
  root = path.join(tmp, 'root');
  config = path.join(tmp, 'config.json');
  await fsp.writeFile(config, JSON.stringify({ history: { maxEntries: 4 } }));
  registry = await startRegistry();
  base = (await pushBusyboxImage(registry.host, 'library/busybox', '1')).ref;
  daemon = await start();
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('histories lists builds newest first with status, outputs and cache ratio; logs replays one; both survive a restart', async () => {
  const ctx = await writeContext(path.join(tmp, 'ok'), { Dockerfile: `FROM ${base}\nRUN echo hello-from-history\n` });
  expect((await build(ctx, 'history/app:1')).code).toBe(0);
  expect((await build(ctx, 'history/app:2')).code).toBe(0);
  const bad = await writeContext(path.join(tmp, 'bad'), { Dockerfile: `FROM ${base}\nRUN echo about-to-fail && exit 7\n` });
  expect((await build(bad, 'history/bad')).code).not.toBe(0);

  const [failed, cached, first] = await histories();
  expect(first).toMatchObject({ status: 'completed', frontend: 'dockerfile.v0', outputs: [{ type: 'image', attrs: { name: 'history/app:1' } }], steps: 2, cached_steps: 0, error: '' });
  expect(first?.completed_ms).toBeGreaterThanOrEqual(first?.started_ms ?? Infinity);
  expect(cached).toMatchObject({ status: 'completed', steps: 2, cached_steps: 2 });
  expect(failed).toMatchObject({ status: 'failed', steps: 1 });
  expect(failed?.error).toMatch(/exit code: 7/);

  const table = await ctl(['debug', 'histories']);
  expect(table.stdout.split('\n')[0]).toMatch(/^REF\s+STATUS\s+STARTED\s+DURATION\s+FRONTEND\s+OUTPUTS\s+CACHED$/);
  expect(table.stdout).toContain(`${cached?.ref}`);
  expect(table.stdout).toMatch(/completed .*image:history\/app:2\s+2\/2 \(100%\)/);

  const replay = async (ref: string): Promise<RunResult> => ctl(['debug', 'logs', ref]);
  const logs = await replay(first?.ref as string);
  expect(logs.code).toBe(0);
  expect(logs.stderr).toMatch(/RUN echo hello-from-history/);
  expect(logs.stderr).toMatch(/hello-from-history\n/);
  expect(logs.stderr).toMatch(/exporting to image/);
  const failedLogs = await replay(failed?.ref as string);
  expect(failedLogs.stderr).toMatch(/about-to-fail/);
  expect(failedLogs.stderr).toMatch(/ERROR|exit code: 7/);

  await daemon.stop();
  daemon = await start();
  const after = await histories();
  expect(after.slice(0, 3).map((r) => r.ref)).toEqual([failed?.ref, cached?.ref, first?.ref]);
  const again = await replay(first?.ref as string);
  expect(again.stderr).toEqual(logs.stderr);

  const unknown = await replay('no-such-build');
  expect(unknown.code).not.toBe(0);
  expect(unknown.stderr).toMatch(/Cannot replay build no-such-build: no such build in the history/);
});

test('the history keeps its count limit, removing the oldest record and its log', async () => {
  const ctx = await writeContext(path.join(tmp, 'more'), { Dockerfile: `FROM ${base}\nRUN echo more\n` });
  for (let i = 0; i < 3; i++) expect((await build(ctx, `history/more:${i}`)).code).toBe(0);
  const records = await histories();
  expect(records).toHaveLength(4);
  const logs = await fsp.readdir(path.join(root, 'history'));
  expect(logs.sort()).toEqual(records.map((r) => `${r.ref}.jsonl.gz`).sort());
});

test('a build the daemon never saw end shows as interrupted after the restart', async () => {
  let asked!: () => void;
  const request = new Promise<void>((resolve) => (asked = resolve));
  const server = http.createServer(() => asked());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const ctx = await writeContext(path.join(tmp, 'held'), { Dockerfile: `FROM ${base}\nADD http://127.0.0.1:${port}/never /never\n` });
    const running = build(ctx, 'history/held');
    await request;
    expect((await histories())[0]).toMatchObject({ status: 'running', completed_ms: 0 });
    daemon.process.kill('SIGKILL');
    await running;
    await daemon.stop();
    daemon = await start();
    const [held] = await histories();
    expect(held).toMatchObject({ status: 'interrupted', error: 'the daemon stopped before the build ended' });
    // what it logged before the kill still replays (the log file was cut short)
    const replay = await ctl(['debug', 'logs', held?.ref as string]);
    expect(replay.code).toBe(0);
    expect(replay.stderr).toMatch(/FROM .*busybox:1\n#\d+ (DONE|CACHED)/);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('debug workers shows the platform, labels, executor, snapshotter and GC policy', async () => {
  const plain = await ctl(['debug', 'workers']);
  expect(plain.code).toBe(0);
  expect(plain.stdout).toMatch(new RegExp(`^ID\\s+PLATFORMS\\n${os.hostname()}\\s+linux/(amd64|arm64)`));
  const verbose = await ctl(['debug', 'workers', '-v']);
  expect(verbose.stdout).toMatch(/Executor:\trunc\n/);
  expect(verbose.stdout).toMatch(/Snapshotter:\t(overlayfs|native)\n/);
  expect(verbose.stdout).toMatch(/org\.mobyproject\.buildkit\.worker\.executor:\toci/);
  // BuildKit's default policy: local contexts and cache mounts kept 48h
  expect(verbose.stdout).toMatch(/Filters:\ttype==source\.local\n\tKeep Duration:\t48h0m0s\n\tKeep Bytes:\t512(\.0)? ?MB/);
  const json = JSON.parse((await ctl(['debug', 'workers', '--format', 'json'])).stdout) as Array<{ platforms: unknown[]; gc_policy: unknown[] }>;
  expect(json).toHaveLength(1);
  expect(json[0]?.gc_policy.length).toBeGreaterThanOrEqual(3);
});
