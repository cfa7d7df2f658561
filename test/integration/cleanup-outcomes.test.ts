import { execFile, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startGatewayServer, type GatewayServer } from '../helpers/gateway-server';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { mountsUnder } from '../helpers/store-mounts';
import { makeTestNetwork, type TestNetwork } from '../helpers/test-network';
import { waitFor } from '../helpers/wait-for';

const run = promisify(execFile);
const BUILDCTL = path.resolve(__dirname, '..', '..', 'dist', 'buildctl', 'main.js');

/** What a build may hold on the host while it runs; after it, in every outcome, none of it. */
interface Held {
  /** containers in buildd's runc root */
  containers: string[];
  /** mounts under buildd's root */
  mounts: string[];
  /** network namespaces of buildd's and the host ends of their veths */
  netns: string[];
  veths: string[];
  /** IP leases in the network's host-local store */
  leases: string[];
  /** what buildd's scratch dirs hold (sessions, bundles, tmp) */
  temp: string[];
}

const NOTHING: Held = { containers: [], mounts: [], netns: [], veths: [], leases: [], temp: [] };

describe('cleanup in every outcome: no container, mount, netns or veth, IP lease or temp dir is left', () => {
  let tmp: string;
  let root: string;
  let net: TestNetwork;
  let gateway: string;
  let registry: TestRegistry;
  let busybox: string;
  let server: GatewayServer;
  let daemon: TestDaemon;

  const startBuildd = (): Promise<TestDaemon> => startDaemon({ builder: 'real', root, extraArgs: ['--cni-config-path', net.conflist] });
  const buildctlArgs = (): string[] => ['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client')];
  const url = (route: string): string => `http://${gateway}:${server.port}${route}`;

  async function held(): Promise<Held> {
    const { stdout: runc } = await run('runc', ['--root', path.join(root, 'runc'), 'list', '-q']);
    const { stdout: links } = await run('ip', ['-o', 'link', 'show', 'master', net.bridge]);
    const ipam = path.join(path.dirname(net.conflist), 'ipam', net.bridge);
    const temp: string[] = [];
    for (const dir of ['sessions', 'bundles', 'tmp']) {
      for (const name of await fsp.readdir(path.join(root, dir)).catch(() => [] as string[])) temp.push(`${dir}/${name}`);
    }
    return {
      containers: runc.split('\n').filter((l) => l.trim().length > 0),
      mounts: await mountsUnder(root),
      netns: await fsp.readdir(path.join(root, 'net', 'sandboxes')).catch(() => [] as string[]),
      veths: links.split('\n').filter((l) => l.trim().length > 0),
      leases: (await fsp.readdir(ipam).catch(() => [] as string[])).filter((n) => n !== 'lock' && !n.startsWith('last_reserved_ip')),
      temp,
    };
  }

  const released = (what: string): Promise<true> =>
    waitFor(what, async () => (JSON.stringify(await held()) === JSON.stringify(NOTHING) ? true : undefined), 60_000);

  function build(name: string, dockerfile: string): Promise<RunResult> {
    return writeContext(path.join(tmp, name), { Dockerfile: dockerfile }).then((ctx) =>
      runBuildctl([...buildctlArgs(), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain']));
  }

  /** A build whose RUN waits on `/hold` forever; resolves once the step is in it, holding everything. */
  async function startHeldBuild(name: string): Promise<{ child: ReturnType<typeof spawn>; exit: Promise<number | null> }> {
    const before = server.seen.get('/hold')?.length ?? 0;
    const ctx = await writeContext(path.join(tmp, name), { Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url(`/hold?${name}`)}\n` });
    const child = spawn(process.execPath, [BUILDCTL, ...buildctlArgs(), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`], {
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('the RUN to reach the server', async () => ((server.seen.get('/hold')?.length ?? 0) > before ? true : undefined), 60_000);
    // the check below is not vacuous: mid-step, every kind of resource is held
    const during = await held();
    expect([during.containers.length, during.netns.length, during.veths.length, during.leases.length]).toEqual([1, 1, 1, 1]);
    expect(during.mounts.length).toBeGreaterThan(0);
    expect(during.temp.length).toBeGreaterThan(0);
    return { child, exit };
  }

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cleanup-'));
    root = path.join(tmp, 'root');
    net = await makeTestNetwork(path.join(tmp, 'net'));
    gateway = net.subnet.replace(/\.0\/24$/, '.1');
    // made here with the address the plugin gives it, so that the server listens before any step
    await run('ip', ['link', 'add', 'name', net.bridge, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${gateway}/24`, 'dev', net.bridge]);
    await run('ip', ['link', 'set', net.bridge, 'up']);
    server = await startGatewayServer(gateway);
    registry = await startRegistry();
    busybox = (await pushBusyboxImage(registry.host)).ref;
    daemon = await startBuildd();
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await registry?.stop();
    await server?.close();
    await net?.remove();
    if (root) for (const m of await mountsUnder(root)) await run('umount', ['-l', m]);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('success', async () => {
    const res = await build('ok', `FROM ${busybox}\nRUN wget -q -O - ${url('/who')} > /who\n`);
    expect(res.code).toBe(0);
    await released('a successful build to release everything');
  }, 120_000);

  test('a failing step', async () => {
    const res = await build('fails', `FROM ${busybox}\nRUN wget -q -O - ${url('/who')} && exit 3\n`);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/did not complete successfully: exit code: 3/);
    await released('a failed build to release everything');
  }, 120_000);

  test('a client cancel (Ctrl-C)', async () => {
    const { child, exit } = await startHeldBuild('cancelled');
    child.kill('SIGINT');
    expect(await exit).not.toBe(0);
    await released('a cancelled build to release everything');
  }, 120_000);

  test('SIGTERM of the daemon mid-step', async () => {
    const { exit } = await startHeldBuild('sigterm');
    await daemon.stop();
    expect(await exit).not.toBe(0);
    expect(await held()).toEqual(NOTHING);
    daemon = await startBuildd();
  }, 120_000);

  test('kill -9 of the daemon mid-step, then a restart', async () => {
    const { exit } = await startHeldBuild('killed');
    daemon.process.kill('SIGKILL');
    await exit;
    await daemon.stop();
    // what the killed daemon left is still there until a daemon starts on the same root
    expect((await held()).containers).toHaveLength(1);
    daemon = await startBuildd();
    expect(await held()).toEqual(NOTHING);
    const res = await build('after-kill', `FROM ${busybox}\nRUN wget -q -O - ${url('/who')}\n`);
    expect(res.code).toBe(0);
    await released('the build after the restart to release everything');
  }, 120_000);
});
