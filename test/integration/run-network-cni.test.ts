import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { mountsUnder } from '../helpers/store-mounts';
import { startGatewayServer, type GatewayServer } from '../helpers/gateway-server';
import { waitFor } from '../helpers/wait-for';

const run = promisify(execFile);
const BUILDCTL = path.resolve(__dirname, '..', '..', 'dist', 'buildctl', 'main.js');

describe('RUN networking with CNI: a namespace per step on a bridge, released in every outcome', () => {
  // a bridge and subnet of this test's own, so that it neither meets nor disturbs other daemons
  const suffix = randomBytes(3).toString('hex');
  const bridge = `bdt${suffix}`;
  const octet = 1 + (parseInt(suffix.slice(0, 2), 16) % 250);
  const subnet = `10.213.${octet}.0/24`;
  const gateway = `10.213.${octet}.1`;
  let tmp: string;
  let root: string;
  let ipamDir: string;
  let conflistFile: string;
  let registry: TestRegistry;
  let busybox: string;
  let daemon: TestDaemon;
  let server: GatewayServer;

  const startBuildd = (): Promise<TestDaemon> => startDaemon({ builder: 'real', root, extraArgs: ['--cni-config-path', conflistFile] });
  const buildctlArgs = (): string[] => ['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client')];
  const build = (ctx: string, extra: string[] = []): Promise<RunResult> =>
    runBuildctl([...buildctlArgs(), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra]);
  const url = (route: string): string => `http://${gateway}:${server.port}${route}`;

  /** Everything a step's network leaves on the host while it exists. */
  async function leftovers(): Promise<{ sandboxes: string[]; veths: string[]; leases: string[]; nat: string[] }> {
    const sandboxes = await fsp.readdir(path.join(root, 'net', 'sandboxes')).catch(() => [] as string[]);
    // the host ends of the veth pairs are the bridge's ports
    const { stdout: links } = await run('ip', ['-o', 'link', 'show', 'master', bridge]);
    const leases = (await fsp.readdir(path.join(ipamDir, bridge)).catch(() => [] as string[])).filter((n) => n !== 'lock' && !n.startsWith('last_reserved_ip'));
    const { stdout: nat } = await run('iptables', ['-w', '-t', 'nat', '-S']);
    return {
      sandboxes,
      veths: links.split('\n').filter((l) => l.trim().length > 0),
      leases,
      nat: nat.split('\n').filter((l) => l.includes(`name: \\"${bridge}\\"`)),
    };
  }
  const NOTHING = { sandboxes: [], veths: [], leases: [], nat: [] };

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cni-'));
    root = path.join(tmp, 'root');
    ipamDir = path.join(tmp, 'ipam');
    conflistFile = path.join(tmp, 'net.conflist');
    // the shape of buildd's default network, with this test's bridge, subnet and lease dir
    await fsp.writeFile(
      conflistFile,
      JSON.stringify({
        cniVersion: '1.0.0',
        name: bridge,
        plugins: [
          { type: 'loopback' },
          { type: 'bridge', bridge, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: ipamDir } },
        ],
      }),
    );
    // made here, with the gateway address the plugin would give it, so the server can listen first
    await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${gateway}/24`, 'dev', bridge]);
    await run('ip', ['link', 'set', bridge, 'up']);
    server = await startGatewayServer(gateway);
    registry = await startRegistry();
    busybox = (await pushBusyboxImage(registry.host)).ref;
    daemon = await startBuildd();
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await registry?.stop();
    await server?.close();
    await run('ip', ['link', 'del', bridge]).catch(() => undefined);
    if (root) for (const m of await mountsUnder(root)) await run('umount', ['-l', m]);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('a RUN fetches a page from a server on the bridge gateway, from its own address on the subnet; nothing is left after', async () => {
    const ctx = await writeContext(path.join(tmp, 'fetch'), {
      Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/page')} && wget -q -O - ${url('/who')}\n`,
    });
    const res = await build(ctx);
    expect(res.stderr).toContain(server.token);
    expect(res.code).toBe(0);
    const from = server.seen.get('/page') ?? [];
    expect(from).toHaveLength(1);
    expect(from[0]).toMatch(new RegExp(`^10\\.213\\.${octet}\\.\\d+$`));
    expect(from[0]).not.toBe(gateway);
    expect(res.stderr).toContain(`you are ${from[0]}`);
    expect(await leftovers()).toEqual(NOTHING);
  }, 120_000);

  test("a step's hostname is BuildKit's buildkitsandbox, or --opt hostname / build-arg:BUILDKIT_SANDBOX_HOSTNAME", async () => {
    const ctx = await writeContext(path.join(tmp, 'hostname'), {
      Dockerfile: `FROM ${busybox}\nRUN echo "name=$(hostname) file=$(cat /etc/hostname) hosts=$(grep -c "^127.0.0.1.*localhost $(hostname)$" /etc/hosts)"\n`,
    });
    const plain = await build(ctx);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toContain('name=buildkitsandbox file=buildkitsandbox hosts=1');
    const named = await build(ctx, ['--opt', 'hostname=ci-runner-7.example']);
    expect(named.code).toBe(0);
    expect(named.stderr).toContain('name=ci-runner-7.example file=ci-runner-7.example hosts=1');
    const arg = await build(ctx, ['--opt', 'build-arg:BUILDKIT_SANDBOX_HOSTNAME=from-arg']);
    expect(arg.stderr).toContain('name=from-arg file=from-arg hosts=1');
    const bad = await build(ctx, ['--opt', 'hostname=bad_name!']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Cannot use --opt hostname=bad_name!: expected a hostname');
  }, 120_000);

  test('RUN --network=none cannot reach the same server: loopback only', async () => {
    const before = server.seen.get('/page')?.length ?? 0;
    const ctx = await writeContext(path.join(tmp, 'none'), {
      Dockerfile: `FROM ${busybox}\nRUN --network=none wget -q -O - ${url('/page')}\n`,
    });
    const res = await build(ctx);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`wget: can't connect to remote host (${gateway}): Network is unreachable`);
    expect(res.stderr).toContain('exit code: 1');
    expect(server.seen.get('/page')?.length ?? 0).toBe(before);
    expect(await leftovers()).toEqual(NOTHING);
  }, 120_000);

  test('a failing RUN that used the network leaves no namespace, veth, lease or NAT rule', async () => {
    const ctx = await writeContext(path.join(tmp, 'failing'), {
      Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/page')} && exit 7\n`,
    });
    const res = await build(ctx);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(server.token);
    expect(res.stderr).toContain('exit code: 7');
    expect(await leftovers()).toEqual(NOTHING);
  }, 120_000);

  test('two builds at once: each RUN has its own namespace and address, both alive together', async () => {
    const [a, b] = await Promise.all(
      ['a', 'b'].map(async (n) => {
        const ctx = await writeContext(path.join(tmp, `barrier-${n}`), {
          Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url(`/barrier?${n}`)} && ip -o -4 addr show dev eth0\n`,
        });
        return build(ctx);
      }),
    );
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    const met = server.seen.get('/barrier') ?? [];
    expect(met).toHaveLength(2);
    expect(new Set(met).size).toBe(2);
    // each step's eth0 holds the address the server saw from it
    const own = (r: RunResult): string | undefined => /inet (10\.213\.\d+\.\d+)\//.exec(r.stderr)?.[1];
    expect(new Set([own(a), own(b)])).toEqual(new Set(met));
    expect(await leftovers()).toEqual(NOTHING);
  }, 120_000);

  test('a network the plugins refuse fails the RUN with the plugin and its message, at the Dockerfile line', async () => {
    const badList = path.join(tmp, 'bad.conflist');
    await fsp.writeFile(
      badList,
      JSON.stringify({
        cniVersion: '1.0.0',
        name: bridge,
        plugins: [{ type: 'loopback' }, { type: 'bridge', bridge, ipam: { type: 'host-local', ranges: [[{ subnet: `10.213.${octet}.0/33` }]], dataDir: ipamDir } }],
      }),
    );
    const bad = await startDaemon({ builder: 'real', root: path.join(tmp, 'bad-root'), extraArgs: ['--cni-config-path', badList] });
    try {
      const ctx = await writeContext(path.join(tmp, 'refused'), { Dockerfile: `FROM ${busybox}\nRUN true\n` });
      const res = await runBuildctl(['--addr', bad.addr, '--tlsdir', path.join(bad.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
        '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain']);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain(`Cannot set up the network of step ["/bin/sh","-c","true"]: bridge: invalid CIDR address: 10.213.${octet}.0/33 (CNI error code 999)`);
      expect(res.stderr).toContain('Dockerfile:2');
    } finally {
      await bad.stop();
      for (const m of await mountsUnder(path.join(tmp, 'bad-root'))) await run('umount', ['-l', m]);
    }
  }, 120_000);

  /** Starts a build whose RUN waits on `/hold` forever; resolves once the request arrived. */
  async function startHeldBuild(name: string): Promise<{ child: ReturnType<typeof spawn>; exit: Promise<number | null> }> {
    const before = server.seen.get('/hold')?.length ?? 0;
    const ctx = await writeContext(path.join(tmp, name), { Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url(`/hold?${name}`)}\n` });
    const child = spawn(process.execPath, [BUILDCTL, ...buildctlArgs(), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain'], {
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('the RUN to reach the server', async () => ((server.seen.get('/hold')?.length ?? 0) > before ? true : undefined), 60_000);
    return { child, exit };
  }

  test('a cancelled build (client gone) releases its step network', async () => {
    const { child, exit } = await startHeldBuild('cancelled');
    const during = await leftovers();
    expect(during.sandboxes).toHaveLength(1);
    expect(during.veths).toHaveLength(1);
    expect(during.leases).toHaveLength(1);
    child.kill('SIGINT');
    await exit;
    await waitFor('the step network to be released', async () => (JSON.stringify(await leftovers()) === JSON.stringify(NOTHING) ? true : undefined), 60_000);
  }, 120_000);

  test('after kill -9 mid-RUN, a restarted daemon DELs and removes what the killed one left', async () => {
    const { exit } = await startHeldBuild('killed');
    daemon.process.kill('SIGKILL');
    await exit;
    const left = await leftovers();
    expect(left.sandboxes).toHaveLength(1);
    expect(left.veths).toHaveLength(1);
    expect(left.leases).toHaveLength(1);
    expect(left.nat.length).toBeGreaterThan(0);
    await daemon.stop();
    daemon = await startBuildd();
    expect(await leftovers()).toEqual(NOTHING);
    const ctx = await writeContext(path.join(tmp, 'after-kill'), { Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/who')}\n` });
    const res = await build(ctx);
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(/you are 10\.213\./);
  }, 120_000);

  test('with --cni-pool-size 2 steps run in ready sandboxes; neither SIGTERM nor kill -9 + restart leaves any', async () => {
    await daemon.stop();
    const startPooled = (): Promise<TestDaemon> =>
      startDaemon({ builder: 'real', root, extraArgs: ['--cni-config-path', conflistFile, '--cni-pool-size', '2'] });
    const poolOf = (n: number) => async (): Promise<true | undefined> => ((await leftovers()).veths.length === n ? true : undefined);
    daemon = await startPooled();
    await waitFor('the pool to fill', poolOf(2), 60_000);
    const ctx = await writeContext(path.join(tmp, 'pooled'), { Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/who?pooled')}\n` });
    const res = await build(ctx);
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(/you are 10\.213\./);
    // the used sandbox is gone, and one made in its place
    await waitFor('the pool to be topped up', poolOf(2), 60_000);
    expect((await leftovers()).sandboxes).toHaveLength(2);
    await daemon.stop();
    expect(await leftovers()).toEqual(NOTHING);
    daemon = await startPooled();
    await waitFor('the pool to fill again', poolOf(2), 60_000);
    daemon.process.kill('SIGKILL');
    await daemon.stop();
    expect((await leftovers()).sandboxes).toHaveLength(2);
    daemon = await startBuildd();
    expect(await leftovers()).toEqual(NOTHING);
  }, 180_000);
});
