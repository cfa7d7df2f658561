import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { mountsUnder } from '../helpers/store-mounts';

const run = promisify(execFile);

/**
 * RUN --network=host and --security=insecure with real runc and CNI: each works only with the
 * client's `--allow` and the daemon's `--allow-insecure-entitlement`, and a missing one fails
 * the build, naming the entitlement, before any step runs.
 */
describe('entitlements: RUN --network=host and --security=insecure', () => {
  // a bridge and subnet of this test's own, as in run-network-cni.test.ts
  const suffix = randomBytes(3).toString('hex');
  const bridge = `bde${suffix}`;
  const octet = 1 + (parseInt(suffix.slice(0, 2), 16) % 250);
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  /** allows both entitlements */
  let allowing: TestDaemon;
  /** allows none */
  let strict: TestDaemon;
  let server: http.Server;
  let port: number;
  const token = `host-only-${randomBytes(8).toString('hex')}`;
  const requests: string[] = [];

  const build = (daemon: TestDaemon, ctx: string, extra: string[] = []): Promise<RunResult> =>
    runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra]);
  const context = (name: string, dockerfile: string): Promise<string> => writeContext(path.join(tmp, name), { Dockerfile: dockerfile });
  const url = (query = ''): string => `http://127.0.0.1:${port}/page${query}`;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-ent-'));
    const conflist = path.join(tmp, 'net.conflist');
    await fsp.writeFile(conflist, JSON.stringify({
      cniVersion: '1.0.0',
      name: bridge,
      plugins: [
        { type: 'loopback' },
        { type: 'bridge', bridge, isGateway: true, ipMasq: true, ipam: { type: 'host-local', ranges: [[{ subnet: `10.215.${octet}.0/24` }]], dataDir: path.join(tmp, 'ipam') } },
      ],
    }));
    // on the host's loopback: reachable from the daemon's network namespace, from no other
    server = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      res.end(`${token}\n`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    port = (server.address() as AddressInfo).port;
    registry = await startRegistry();
    busybox = (await pushBusyboxImage(registry.host)).ref;
    const cni = ['--cni-config-path', conflist];
    allowing = await startDaemon({
      builder: 'real', root: path.join(tmp, 'allowing'),
      extraArgs: [...cni, '--allow-insecure-entitlement', 'network.host', '--allow-insecure-entitlement', 'security.insecure'],
    });
    strict = await startDaemon({ builder: 'real', root: path.join(tmp, 'strict'), extraArgs: cni });
  }, 120_000);

  afterAll(async () => {
    await allowing?.stop();
    await strict?.stop();
    await registry?.stop();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await run('ip', ['link', 'del', bridge]).catch(() => undefined);
    if (tmp) {
      for (const m of await mountsUnder(tmp)) await run('umount', ['-l', m]);
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });

  test("RUN --network=host with both entitlements reaches a server on the host's 127.0.0.1", async () => {
    const before = requests.length;
    const ctx = await context('host', `FROM ${busybox}\nRUN --network=host wget -q -O - ${url()}\n`);
    const res = await build(allowing, ctx, ['--allow', 'network.host']);
    expect(res.stderr).toContain(token);
    expect(res.code).toBe(0);
    expect(requests.length).toBe(before + 1);
  }, 120_000);

  // also shows that the network is part of the cache key: the host step above has the same command
  test('the same URL from the default (CNI) network fails: 127.0.0.1 there is the step itself', async () => {
    const before = requests.length;
    const ctx = await context('default', `FROM ${busybox}\nRUN wget -q -O - ${url()}\n`);
    const res = await build(allowing, ctx, ['--allow', 'network.host']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("wget: can't connect to remote host (127.0.0.1): Connection refused");
    expect(res.stderr).not.toContain(token);
    expect(requests.length).toBe(before);
  }, 120_000);

  test('--opt force-network-mode=host gives every RUN the host network', async () => {
    const ctx = await context('forced', `FROM ${busybox}\nRUN wget -q -O - ${url('?forced')}\n`);
    const res = await build(allowing, ctx, ['--allow', 'network.host', '--opt', 'force-network-mode=host']);
    expect(res.stderr).toContain(token);
    expect(res.code).toBe(0);
    expect(res.stderr).not.toContain('force-network-mode is not supported');
  }, 120_000);

  test('without the client --allow network.host the build fails naming network.host, before any step runs', async () => {
    const before = requests.length;
    const marker = `first-step-${randomBytes(4).toString('hex')}`;
    const ctx = await context('no-allow', `FROM ${busybox}\nRUN echo ${marker}-$((40+2))\nRUN --network=host wget -q -O - ${url('?no-allow')}\n`);
    const res = await build(allowing, ctx);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('network.host is not allowed; the client must grant it with buildctl build --allow network.host');
    expect(res.stderr).toContain('Dockerfile:3');
    expect(res.stderr).not.toContain(`${marker}-42`);
    expect(requests.length).toBe(before);
  }, 120_000);

  test('without the daemon --allow-insecure-entitlement network.host the build fails naming network.host', async () => {
    const before = requests.length;
    const ctx = await context('strict-host', `FROM ${busybox}\nRUN --network=host wget -q -O - ${url()}\n`);
    const res = await build(strict, ctx, ['--allow', 'network.host']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(
      'Cannot grant entitlement network.host: it is not allowed by build daemon configuration; start buildd with --allow-insecure-entitlement network.host',
    );
    expect(requests.length).toBe(before);
    // and with no --allow either, the step's own check names it
    const plain = await build(strict, ctx);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain('network.host is not allowed');
  }, 120_000);

  test('RUN --security=insecure with both entitlements has every capability of the daemon and can mount a tmpfs; a default step cannot', async () => {
    const ownCaps = /^CapEff:\s*([0-9a-f]+)$/m.exec(await fsp.readFile('/proc/self/status', 'utf8'))?.[1];
    const ctx = await context('insecure', `FROM ${busybox}\nRUN --security=insecure grep CapEff /proc/self/status && mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo tmpfs-mounted-$((40+2)) && umount /mnt/t\n`);
    const res = await build(allowing, ctx, ['--allow', 'security.insecure']);
    expect(res.stderr).toContain('tmpfs-mounted-42');
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(new RegExp(`CapEff:\\s*${ownCaps}`));

    const sandboxed = await context('sandboxed', `FROM ${busybox}\nRUN grep CapEff /proc/self/status && mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo tmpfs-mounted-$((40+2))\n`);
    const denied = await build(allowing, sandboxed, ['--allow', 'security.insecure']);
    expect(denied.code).not.toBe(0);
    // Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    expect(denied.stderr).toMatch(/CapEff:\s*00000000a80425fb/);
    expect(denied.stderr).toContain('mount: permission denied');
    expect(denied.stderr).not.toContain('tmpfs-mounted-42');
  }, 120_000);

  test('RUN --security=insecure without the client --allow, or without the daemon flag, fails naming security.insecure', async () => {
    // the output differs from the command text, which the error's Dockerfile excerpt shows
    const marker = `insecure-ran-${randomBytes(4).toString('hex')}`;
    const ctx = await context('insecure-denied', `FROM ${busybox}\nRUN --security=insecure echo ${marker}-$((40+2))\n`);
    const noAllow = await build(allowing, ctx);
    expect(noAllow.code).not.toBe(0);
    expect(noAllow.stderr).toContain('security.insecure is not allowed; the client must grant it with buildctl build --allow security.insecure');
    expect(noAllow.stderr).not.toContain(`${marker}-42`);
    const noDaemonFlag = await build(strict, ctx, ['--allow', 'security.insecure']);
    expect(noDaemonFlag.code).not.toBe(0);
    expect(noDaemonFlag.stderr).toContain('Cannot grant entitlement security.insecure: it is not allowed by build daemon configuration');
    expect(noDaemonFlag.stderr).not.toContain(`${marker}-42`);
  }, 120_000);

  test('buildctl refuses an unknown entitlement before it connects', async () => {
    const ctx = await context('unknown', `FROM ${busybox}\nRUN true\n`);
    const res = await build(allowing, ctx, ['--allow', 'network.hots']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('Cannot parse --allow network.hots: unknown entitlement network.hots (network.host or security.insecure)');
  }, 120_000);
});
