import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { healthClient, type HealthClient } from '../helpers/health-client';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(240_000);

/**
 * The daemon as operators run it: the gRPC health service (on the mTLS listener and on a plain
 * health-only address for probes), Prometheus metrics and profiles on --debugaddr, and a
 * SIGTERM that drains: NOT_SERVING at once, new builds refused, the running build finishes.
 */
let tmp: string;
let registry: TestRegistry;
let daemon: TestDaemon;
let base: string;
let healthAddr: string;
let debugAddr: string;
const clients: HealthClient[] = [];

function build(ctx: string, output: string): Promise<RunResult> {
  return runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', '--output', output,
  ]);
}

async function scrape(): Promise<string> {
  const res = await fetch(`http://${debugAddr}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** A sample's value in Prometheus' text format (0 when absent). */
function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function client(target: string, tlsDir?: string): HealthClient {
  const c = healthClient(target, tlsDir);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-operations-'));
  registry = await startRegistry();
  base = (await pushBusyboxImage(registry.host, 'library/busybox', '1')).ref;
  healthAddr = `127.0.0.1:${await freePort()}`;
  debugAddr = `127.0.0.1:${await freePort()}`;
  daemon = await startDaemon({
    builder: 'real',
    extraArgs: ['--health-addr', `tcp://${healthAddr}`, '--debugaddr', debugAddr, '--shutdown-grace', '2m'],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('health says SERVING on the mTLS listener and on the plain health address, for the daemon and its Control service', async () => {
  const viaTls = client(daemon.addr, path.join(daemon.certsDir as string, 'client'));
  expect(await viaTls.check()).toBe('SERVING');
  expect(await viaTls.check('buildd.v1.Control')).toBe('SERVING');
  const probe = client(healthAddr);
  expect(await probe.check()).toBe('SERVING');
  expect(await probe.check('buildd.v1.Control')).toBe('SERVING');
  await expect(probe.check('no.such.Service')).rejects.toMatchObject({ code: 5 });
  // the plain address serves health only: the Control service is not there without a certificate
  const res = await runBuildctl(['--addr', `tcp://${healthAddr}`, 'debug', 'info']).catch((err: Error) => ({ code: 1, stderr: err.message, stdout: '' }));
  expect(res.code).not.toBe(0);
});

test('/metrics counts builds, cache hits and misses, failures, context and registry bytes', async () => {
  const before = await scrape();
  // incompressible, so the pushed layer is at least this big
  const ctx = await writeContext(path.join(tmp, 'ok'), { 'data.txt': randomBytes(150_000).toString('base64'), Dockerfile: `FROM ${base}\nCOPY data.txt /data.txt\nRUN echo built > /built\n` });
  const pushed = `type=image,name=${registry.host}/ops/app:1,push=true`;
  const first = await build(ctx, pushed);
  expect(first.stderr).toMatch(/RUN echo built/);
  expect(first.code).toBe(0);
  const afterFirst = await scrape();
  expect(sample(afterFirst, 'buildd_builds_started_total') - sample(before, 'buildd_builds_started_total')).toBe(1);
  expect(sample(afterFirst, 'buildd_builds_finished_total', '{status="succeeded"}') - sample(before, 'buildd_builds_finished_total', '{status="succeeded"}')).toBe(1);
  // FROM, COPY and RUN ran
  expect(sample(afterFirst, 'buildd_cache_misses_total') - sample(before, 'buildd_cache_misses_total')).toBe(3);
  expect(sample(afterFirst, 'buildd_step_duration_seconds_count', '{status="succeeded"}')).toBeGreaterThanOrEqual(3);
  expect(sample(afterFirst, 'buildd_context_received_bytes_total') - sample(before, 'buildd_context_received_bytes_total')).toBeGreaterThanOrEqual(200_000);
  expect(sample(afterFirst, 'buildd_registry_blob_bytes_total', '{direction="pull"}')).toBeGreaterThan(100_000);
  // the base layer is mounted from the repository it came from: only the new layers and the config move
  expect(sample(afterFirst, 'buildd_registry_blob_bytes_total', '{direction="push"}')).toBeGreaterThan(150_000);
  expect(sample(afterFirst, 'buildd_content_store_bytes')).toBeGreaterThan(100_000);
  expect(sample(afterFirst, 'buildd_build_duration_seconds_count', '{status="succeeded"}')).toBeGreaterThanOrEqual(1);

  const again = await build(ctx, 'type=image,name=ops/app:2');
  expect(again.code).toBe(0);
  const afterAgain = await scrape();
  expect(sample(afterAgain, 'buildd_cache_hits_total') - sample(afterFirst, 'buildd_cache_hits_total')).toBe(3);
  expect(sample(afterAgain, 'buildd_cache_misses_total')).toBe(sample(afterFirst, 'buildd_cache_misses_total'));

  const bad = await writeContext(path.join(tmp, 'bad'), { Dockerfile: `FROM ${base}\nRUN exit 3\n` });
  const failed = await build(bad, 'type=image,name=ops/bad');
  expect(failed.code).not.toBe(0);
  const afterFailed = await scrape();
  expect(sample(afterFailed, 'buildd_builds_finished_total', '{status="failed"}') - sample(afterAgain, 'buildd_builds_finished_total', '{status="failed"}')).toBe(1);
  const reasons = afterFailed.split('\n').filter((l) => l.startsWith('buildd_builds_failed_total{reason='));
  expect(reasons.length).toBeGreaterThan(0);
  expect(sample(afterFailed, 'buildd_step_duration_seconds_count', '{status="failed"}')).toBe(1);
  // the daemon's log names the failed step with its build and vertex
  const logged = daemon
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l['msg'] === 'step failed');
  expect(logged).toMatchObject({ build: expect.stringMatching(/^[0-9a-f-]{36}$/), vertex: expect.stringMatching(/^sha256:/), step: expect.stringMatching(/RUN exit 3/) });
  expect(sample(afterFailed, 'buildd_active_builds')).toBe(0);
  expect(sample(afterFailed, 'buildd_active_steps')).toBe(0);
  // Node's own process metrics come with them
  expect(sample(afterFailed, 'buildd_process_resident_memory_bytes')).toBeGreaterThan(0);
});

test('/debug/pprof gives a CPU profile and a heap snapshot; unknown paths and bad arguments are refused', async () => {
  const prof = await fetch(`http://${debugAddr}/debug/pprof/profile?seconds=0.3`);
  expect(prof.status).toBe(200);
  const profile = (await prof.json()) as { nodes: unknown[]; startTime: number; endTime: number };
  expect(profile.nodes.length).toBeGreaterThan(0);
  expect(profile.endTime).toBeGreaterThan(profile.startTime);
  expect((await fetch(`http://${debugAddr}/debug/pprof/profile?seconds=9999`)).status).toBe(400);
  const heap = await fetch(`http://${debugAddr}/debug/pprof/heap`);
  expect(heap.status).toBe(200);
  const head = (await heap.text()).slice(0, 20);
  expect(head).toMatch(/^\{"snapshot":/);
  expect((await fetch(`http://${debugAddr}/nothing`)).status).toBe(404);
});

test('SIGTERM: health turns NOT_SERVING at once, a new build is refused as UNAVAILABLE, the running build finishes', async () => {
  // the running build waits on an ADD whose server answers only when the test says so
  let asked!: () => void;
  const request = new Promise<void>((resolve) => (asked = resolve));
  let answer!: () => void;
  const release = new Promise<void>((resolve) => (answer = resolve));
  const server = http.createServer((_req, res) => {
    asked();
    void release.then(() => res.end('held until the daemon drained\n'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const slow = await writeContext(path.join(tmp, 'slow'), { Dockerfile: `FROM ${base}\nADD http://127.0.0.1:${port}/held /held\nRUN cat /held\n` });
    const dest = path.join(tmp, 'drained.tar');
    const running = build(slow, `type=oci,dest=${dest}`);
    await request;

    const probe = client(healthAddr);
    expect(await probe.check()).toBe('SERVING');
    daemon.process.kill('SIGTERM');
    await waitFor('health to say NOT_SERVING', async () => ((await probe.check()) === 'NOT_SERVING' ? true : undefined));
    expect(await probe.check('buildd.v1.Control')).toBe('NOT_SERVING');
    // a liveness probe must not restart a daemon that is draining
    expect(await probe.check('liveness')).toBe('SERVING');

    const refusedCtx = await writeContext(path.join(tmp, 'refused'), { Dockerfile: `FROM ${base}\nRUN true\n` });
    const refused = await build(refusedCtx, 'type=image,name=ops/refused');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/daemon is shutting down/);
    // the status code buildctl got (it prints only the message)
    expect(daemon.stderr()).toMatch(/"code":"unavailable","err":"Cannot start a build: the daemon is shutting down/);

    answer();
    const done = await running;
    expect(done.stderr).toMatch(/RUN cat \/held/);
    expect(done.code).toBe(0);
    expect((await fsp.stat(dest)).size).toBeGreaterThan(0);
    await waitFor('the daemon to exit', async () => (daemon.process.exitCode !== null ? true : undefined), 30_000);
    expect(daemon.process.exitCode).toBe(0);
    expect(daemon.stderr()).toMatch(/waiting for running builds to finish/);
  } finally {
    answer();
    server.closeAllConnections();
    server.close();
  }
});
