import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(240_000);

/**
 * kill -9 of the daemon in the middle of a pull, of a download (ADD), of a COPY and of a push, each
 * followed by a restart: every blob left re-hashes to its digest, nothing is left in the
 * content store's ingest dir, every record of the metadata database names a committed
 * snapshot and a blob that exist, and the next build works.
 */
let tmp: string;
let root: string;
let registry: TestRegistry;
let proxy: FaultProxy | undefined;
let daemon: TestDaemon;

function build(d: TestDaemon, ctx: string, extra: string[] = []): Promise<RunResult> {
  return runBuildctl(['--addr', d.addr, '--tlsdir', path.join(d.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra]);
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The store's invariants after a crash and a restart. */
async function expectConsistentStore(expectRecords = true): Promise<void> {
  const blobs = path.join(root, 'content', 'blobs', 'sha256');
  for (const name of await fsp.readdir(blobs)) expect(await sha256File(path.join(blobs, name))).toBe(name);
  expect(await fsp.readdir(path.join(root, 'content', 'ingest'))).toEqual([]);
  const db = new Database(path.join(root, 'meta.db'), { readonly: true, fileMustExist: true });
  let committed: Set<string>;
  try {
    committed = new Set((db.prepare('SELECT id FROM snapshots').all() as Array<{ id: string }>).map((r) => r.id));
    // every record names a committed snapshot, and every snapshot's parent is one too
    const snapshots = db.prepare('SELECT snapshot FROM cache_records WHERE snapshot IS NOT NULL UNION SELECT snapshot FROM layers UNION SELECT parent FROM snapshots WHERE parent IS NOT NULL').all() as Array<{ snapshot: string }>;
    if (expectRecords) expect(snapshots.length).toBeGreaterThan(0);
    for (const { snapshot } of snapshots) expect(committed.has(snapshot) ? snapshot : `${snapshot} (no committed snapshot)`).toBe(snapshot);
    const stored = db.prepare("SELECT digest FROM layers WHERE variant != 'unstored' UNION SELECT digest FROM images").all() as Array<{ digest: string }>;
    for (const { digest } of stored) await expect(fsp.stat(path.join(blobs, digest.replace('sha256:', '')))).resolves.toBeDefined();
  } finally {
    db.close();
  }
  // every snapshot dir is a committed snapshot (active ones a crash left are gone), and every committed one has its dir
  const dirs = (await fsp.readdir(path.join(root, 'snapshots'))).filter((n) => /^[a-f0-9]{24}$/.test(n));
  expect(dirs.sort()).toEqual([...committed].sort());
}

async function killAndRestart(expectRecords = true): Promise<void> {
  daemon.process.kill('SIGKILL');
  await new Promise((resolve) => daemon.process.once('exit', resolve));
  await daemon.stop().catch(() => undefined);
  await proxy?.close();
  proxy = undefined;
  daemon = await startDaemon({ builder: 'real', root });
  await expectConsistentStore(expectRecords);
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-crash-'));
  root = path.join(tmp, 'root');
  registry = await startRegistry();
  await pushBusyboxImage(registry.host, 'library/busybox', '1');
  daemon = await startDaemon({ builder: 'real', root });
});

afterAll(async () => {
  await daemon?.stop();
  await proxy?.close();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('kill -9 in the middle of a pull', async () => {
  // the first pull of the base, through a proxy that stalls its layer part way
  proxy = await startFaultProxy(registry.host, (method, p) => (method === 'GET' && p.includes('/blobs/') ? { kind: 'stall-response', afterBytes: 100_000 } : { kind: 'pass' }));
  const ctx = await writeContext(path.join(tmp, 'pull'), { Dockerfile: `FROM ${proxy.host}/library/busybox:1\nRUN echo pulled > /p\n` });
  const client = build(daemon, ctx);
  const p = proxy;
  await waitFor('the layer download to stall', async () => (p.stalls() > 0 ? true : undefined), 60_000);
  await killAndRestart(false);
  expect((await client).code).not.toBe(0);
  const warm = await writeContext(path.join(tmp, 'warm'), { Dockerfile: `FROM ${registry.host}/library/busybox:1\nRUN echo warm > /warm\n` });
  expect((await build(daemon, warm)).code).toBe(0);
  await expectConsistentStore();
});

test('kill -9 in the middle of an ADD download', async () => {
  let held: http.ServerResponse | undefined;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(4_000_000) });
    res.write(randomBytes(500_000));
    held = res;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const ctx = await writeContext(path.join(tmp, 'add'), { Dockerfile: `FROM ${registry.host}/library/busybox:1\nADD http://127.0.0.1:${port}/big /big\n` });
    const client = build(daemon, ctx);
    await waitFor('the download to start', async () => (held ? true : undefined), 60_000);
    await killAndRestart();
    expect((await client).code).not.toBe(0);
  } finally {
    held?.destroy();
    server.closeAllConnections();
    server.close();
  }
});

test('kill -9 in the middle of a COPY', async () => {
  // a stage of many files, then a COPY of them that must copy each one (--chown: no links)
  const ctx = await writeContext(path.join(tmp, 'copy'), {
    Dockerfile: [
      `FROM ${registry.host}/library/busybox:1 AS many`,
      'RUN mkdir /many && cd /many && i=0 && while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i+1)); done',
      `FROM ${registry.host}/library/busybox:1`,
      'COPY --from=many --chown=1:1 /many /many',
    ].join('\n'),
  });
  const client = build(daemon, ctx);
  const snapshots = path.join(root, 'snapshots');
  // the COPY's snapshot: a directory being written that has no row yet
  const copying = await waitFor(
    'the COPY to be part way',
    async () => {
      const db = new Database(path.join(root, 'meta.db'), { readonly: true, fileMustExist: true });
      try {
        const committed = new Set((db.prepare('SELECT id FROM snapshots').all() as Array<{ id: string }>).map((r) => r.id));
        for (const name of await fsp.readdir(snapshots)) {
          if (committed.has(name) || !/^[a-f0-9]{24}$/.test(name)) continue;
          // the RUN writes /many too, as root; the COPY's files are uid 1's
          const dir = path.join(snapshots, name, 'fs', 'many');
          const first = (await fsp.readdir(dir).catch(() => [] as string[]))[0];
          if (first !== undefined && (await fsp.lstat(path.join(dir, first))).uid === 1) return name;
        }
        return undefined;
      } finally {
        db.close();
      }
    },
    120_000,
  );
  await killAndRestart();
  expect((await client).code).not.toBe(0);
  await expect(fsp.access(path.join(snapshots, copying))).rejects.toMatchObject({ code: 'ENOENT' });
  // the stage before it was committed with its record: only the COPY runs again
  const again = await build(daemon, ctx);
  expect(again.code).toBe(0);
  expect(again.stderr).toMatch(/RUN mkdir \/many [^\n]*\n#\d+ CACHED/);
  await expectConsistentStore();
});

test('kill -9 in the middle of a push', async () => {
  proxy = await startFaultProxy(registry.host, (method) => (method === 'PATCH' || method === 'PUT' ? { kind: 'stall-request', afterBytes: 50_000 } : { kind: 'pass' }));
  const ctx = await writeContext(path.join(tmp, 'push'), { Dockerfile: `FROM ${registry.host}/library/busybox:1\nRUN head -c 2000000 /dev/urandom > /noise\n` });
  const client = build(daemon, ctx, ['--output', `type=image,name=${proxy.host}/team/pushed:1,push=true`]);
  const p = proxy;
  await waitFor('the upload to stall', async () => (p.stalls() > 0 ? true : undefined), 60_000);
  await killAndRestart();
  expect((await client).code).not.toBe(0);
  // the step before the push was committed and recorded: it is still cached
  const again = await build(daemon, ctx, ['--output', `type=image,name=${registry.host}/team/pushed:1,push=true`]);
  expect(again.code).toBe(0);
  expect(again.stderr).toMatch(/RUN head -c 2000000 \/dev\/urandom > \/noise\n#\d+ CACHED/);
  await expectConsistentStore();
});
