import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';
import { LocalContentStore } from '../../store/content-store';

jest.setTimeout(240_000);

/**
 * buildctl du and prune against a real daemon: records with sizes and the steps that made
 * them, prune down to a bound, a build that runs while everything is pruned keeps what it
 * holds and succeeds, and a restart removes a blob nothing refers to.
 */
let tmp: string;
let root: string;
let registry: TestRegistry;
let daemon: TestDaemon;
let base: string;

function ctl(d: TestDaemon, args: string[]): Promise<RunResult> {
  return runBuildctl(['--addr', d.addr, '--tlsdir', path.join(d.certsDir as string, 'client'), ...args]);
}

function build(d: TestDaemon, ctx: string): Promise<RunResult> {
  return ctl(d, ['build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', '--output', 'type=image,name=cache-prune/app']);
}

/** `du -v` records as objects. */
async function du(d: TestDaemon, filters: string[] = []): Promise<Array<Record<string, string>>> {
  const res = await ctl(d, ['du', '-v', ...filters.flatMap((f) => ['--filter', f])]);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  return res.stdout
    .split('\n\n')
    .filter((block) => block.startsWith('ID:'))
    .map((block) => Object.fromEntries(block.split('\n').map((line) => line.split(/:\t+/, 2) as [string, string])));
}

function totalBytes(stdout: string): number {
  const m = /^Total:\s+([\d.]+)(B|kB|MB|GB)$/m.exec(stdout);
  if (!m) throw new Error(`no total in ${stdout}`);
  return Number(m[1]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as 'B' | 'kB' | 'MB' | 'GB'];
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cache-prune-'));
  root = path.join(tmp, 'root');
  registry = await startRegistry();
  base = (await pushBusyboxImage(registry.host, 'library/busybox', '1')).ref;
  daemon = await startDaemon({ builder: 'real', root });
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('du lists each record with its size and the step that made it; prune keeps under --keep-storage', async () => {
  const a = await writeContext(path.join(tmp, 'a'), { Dockerfile: `FROM ${base}\nRUN head -c 600000 /dev/urandom > /a\n` });
  const b = await writeContext(path.join(tmp, 'b'), { 'big.bin': randomBytes(400_000).toString('base64'), Dockerfile: `FROM ${base}\nCOPY big.bin /b\nRUN echo b > /bb\n` });
  expect((await build(daemon, a)).code).toBe(0);
  expect((await build(daemon, b)).code).toBe(0);

  const records = await du(daemon);
  const described = (re: RegExp): Record<string, string> | undefined => records.find((r) => re.test(r['Description'] ?? ''));
  const run = described(/RUN head -c 600000/);
  expect(run).toMatchObject({ Type: 'regular', Reclaimable: 'true', Shared: 'false' });
  expect(Number(/([\d.]+)kB/.exec(run?.['Size'] ?? '')?.[1])).toBeGreaterThan(600);
  // the busybox layer: its newest record is the FROM step's (the pull's says "pulled from")
  const pulled = described(/(pulled from|FROM) .*busybox/);
  // both builds are layered on it
  expect(pulled).toMatchObject({ Shared: 'true', 'Usage count': expect.stringMatching(/^[2-9]/) });
  expect(described(/COPY big.bin/)?.['Parent']).toBe(pulled?.['ID']);

  const before = totalBytes((await ctl(daemon, ['du'])).stdout);
  const bound = 1_000_000;
  expect(before).toBeGreaterThan(bound);
  const pruned = await ctl(daemon, ['prune', '--keep-storage', '1']);
  expect(pruned.code).toBe(0);
  expect(pruned.stdout).toMatch(/^Total:\s+\d/m);
  const after = totalBytes((await ctl(daemon, ['du'])).stdout);
  expect(after).toBeLessThanOrEqual(bound);
  // a pruned step runs again, the rest still comes from the cache
  const again = await build(daemon, a);
  expect(again.code).toBe(0);
});

test('a build running while everything is pruned keeps what it holds, and succeeds', async () => {
  let release: (() => void) | undefined;
  let arrived: () => void = () => undefined;
  const requested = new Promise<void>((resolve) => (arrived = resolve));
  // holds the ADD's download until the test lets it go
  const gate = http.createServer((_req, res) => {
    arrived();
    release = () => res.end('gate\n');
  });
  await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
  const port = (gate.address() as AddressInfo).port;
  const ctx = await writeContext(path.join(tmp, 'held'), {
    Dockerfile: `FROM ${base}\nRUN echo held > /held\nADD http://127.0.0.1:${port}/gate /gate\nRUN cat /held /gate > /both\n`,
  });
  try {
    const running = build(daemon, ctx);
    await requested;
    const held = await waitFor('the RUN before the gate to be committed', async () => (await du(daemon, ['description~=echo held']))[0]);
    expect(held['Reclaimable']).toBe('false');
    const pruned = await ctl(daemon, ['prune']);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).not.toContain(held['ID']);
    release?.();
    const res = await running;
    expect(res.stderr).not.toMatch(/ERROR/);
    expect(res.code).toBe(0);
    expect((await du(daemon, [`id==${held['ID']}`])).length).toBe(1);
  } finally {
    release?.();
    gate.close();
  }
});

test('a restart removes a blob nothing refers to and keeps the cache that is referred to', async () => {
  const ctx = await writeContext(path.join(tmp, 'kept'), { Dockerfile: `FROM ${base}\nRUN echo kept > /kept\n` });
  expect((await build(daemon, ctx)).code).toBe(0);
  await daemon.stop();
  const content = await LocalContentStore.open(path.join(root, 'content'));
  const orphan = await content.ingest(Readable.from([randomBytes(1000)]));
  daemon = await startDaemon({ builder: 'real', root });
  expect(await content.info(orphan.digest)).toBeUndefined();
  const again = await build(daemon, ctx);
  expect(again.code).toBe(0);
  expect(again.stderr).toMatch(/RUN echo kept > \/kept\n#\d+ CACHED/);
});

test('the automatic GC keeps a daemon under its keep-storage bound across 20 different builds', async () => {
  const config = path.join(tmp, 'gc.json');
  const bound = 4_000_000;
  await fsp.writeFile(config, JSON.stringify({ gc: { policy: [{ keepBytes: '4MB' }], interval: 0 } }));
  const gcd = await startDaemon({ builder: 'real', root: path.join(tmp, 'gc-root'), extraArgs: ['--config', config] });
  try {
    for (let i = 0; i < 20; i++) {
      const ctx = await writeContext(path.join(tmp, `gc-${i}`), { Dockerfile: `FROM ${base}\nRUN head -c 300000 /dev/urandom > /f${i}\n` });
      const res = await build(gcd, ctx);
      expect(res.stderr).not.toMatch(/ERROR/);
      expect(res.code).toBe(0);
      // the run the build's end asked for brings the cache back under the bound
      await waitFor(`the cache under ${bound} bytes after build ${i}`, async () => (totalBytes((await ctl(gcd, ['du'])).stdout) <= bound ? true : undefined));
    }
    // older builds' steps were removed, least recently used first; the newest is still there
    const left = await du(gcd);
    expect(left.some((r) => /RUN head -c 300000 \/dev\/urandom > \/f19/.test(r['Description'] ?? ''))).toBe(true);
    expect(left.some((r) => /> \/f0$/.test(r['Description'] ?? ''))).toBe(false);
  } finally {
    await gcd.stop();
  }
});

test('du lists a cache mount; prune --filter type==exec.cachemount empties it', async () => {
  const ctx = await writeContext(path.join(tmp, 'mount'), {
    Dockerfile: `FROM ${base}\nARG STAMP\nRUN --mount=type=cache,id=prune-me,target=/c echo "$STAMP" >> /c/log && wc -l < /c/log > /lines\n`,
  });
  const withStamp = (stamp: string): Promise<RunResult> =>
    ctl(daemon, ['build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--opt', `build-arg:STAMP=${stamp}`, '--output', `type=local,dest=${path.join(tmp, `out-${stamp}`)}`]);
  expect((await withStamp('one')).code).toBe(0);
  expect((await withStamp('two')).code).toBe(0);
  expect((await fsp.readFile(path.join(tmp, 'out-two', 'lines'), 'utf8')).trim()).toBe('2');
  const [mount] = await du(daemon, ['type==exec.cachemount']);
  expect(mount).toMatchObject({ Description: 'cache mount prune-me', Mutable: 'true', Reclaimable: 'true' });
  const pruned = await ctl(daemon, ['prune', '--filter', 'type==exec.cachemount']);
  expect(pruned.stdout).toContain(`${mount?.['ID']}+`);
  expect(await du(daemon, ['type==exec.cachemount'])).toEqual([]);
  // the next step that mounts it starts from an empty cache
  expect((await withStamp('three')).code).toBe(0);
  expect((await fsp.readFile(path.join(tmp, 'out-three', 'lines'), 'utf8')).trim()).toBe('1');
});

test('a prune removes the download an ADD made once nothing refers to it, and keeps a fresh blob a build may be about to use', async () => {
  const body = randomBytes(200_000);
  const server = http.createServer((_req, res) => res.end(body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const ctx = await writeContext(path.join(tmp, 'download'), { Dockerfile: `FROM ${base}\nADD http://127.0.0.1:${port}/data /data\n` });
    expect((await build(daemon, ctx)).code).toBe(0);
    const hex = createHash('sha256').update(body).digest('hex');
    const blob = path.join(root, 'content', 'blobs', 'sha256', hex);
    await expect(fsp.access(blob)).resolves.toBeUndefined();
    // the step's snapshot holds the file; the downloaded blob itself is referred to by nothing,
    // and was written within the last minute: an upload may be about to refer to it
    const age = (ms: number): void => {
      const db = new Database(path.join(root, 'meta.db'));
      try {
        db.prepare('UPDATE blobs SET written_at = ? WHERE digest = ?').run(new Date(Date.now() - ms).toISOString(), `sha256:${hex}`);
      } finally {
        db.close();
      }
    };
    // a prune that removes no record still sweeps blobs
    expect((await ctl(daemon, ['prune', '--filter', 'type==exec.cachemount'])).code).toBe(0);
    await expect(fsp.access(blob)).resolves.toBeUndefined();
    age(10 * 60_000);
    expect((await ctl(daemon, ['prune', '--filter', 'type==exec.cachemount'])).code).toBe(0);
    await expect(fsp.access(blob)).rejects.toMatchObject({ code: 'ENOENT' });
    // the ADD's key downloads the file again, and the step is still cached
    const again = await build(daemon, ctx);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/ADD http:\/\/127\.0\.0\.1:\d+\/data \/data\n#\d+ CACHED/);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
