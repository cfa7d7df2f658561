import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startGatewayServer, type GatewayServer } from '../helpers/gateway-server';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { createRootlessUser, startRootlessDaemon, type RootlessUser } from '../helpers/rootless-daemon';
import { mountsUnder } from '../helpers/store-mounts';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(240_000);

const run = promisify(execFile);

/**
 * Processes whose real uid is `uid` (rootlesskit, buildd, slirp4netns, containers) that still
 * run. Zombies are not counted: after the kill -9, the killed buildd's runc is reparented to
 * pid 1 and has exited, holding nothing, until pid 1 gets to collecting it.
 */
async function processesOf(uid: number): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const status = await fsp.readFile(`/proc/${e}/status`, 'utf8').catch(() => '');
    if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) === uid && !/^State:\s+Z/m.test(status)) out.push(/^Name:\s+(\S+)/m.exec(status)?.[1] ?? e);
  }
  return out;
}

/**
 * Rootless RUN networking: the daemon's CNI bridge in a namespace of its own, slirp4netns the
 * way out. The server the steps fetch from listens on an address of a bridge (no ports) that this
 * test adds to the host (10.214.x.1/32): slirp4netns turns a step's connection into a socket of
 * the rootless user on the host, which the host delivers locally, so the traffic never leaves
 * the machine. Not 127.0.0.1 through slirp's 10.0.2.2: buildd gives --disable-host-loopback, as
 * BuildKit does, so that steps cannot reach the host's loopback services.
 * Needs /dev/net/tun usable by the user (scripts/install-system-deps.sh makes it 0666).
 */
describe('buildd --rootless: RUN steps reach out through slirp4netns', () => {
  const suffix = randomBytes(3).toString('hex');
  const link = `bdr${suffix}`;
  const address = `10.214.${1 + (parseInt(suffix.slice(0, 2), 16) % 250)}.1`;
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  let user: RootlessUser;
  let daemon: TestDaemon | undefined;
  let server: GatewayServer;

  const build = (ctx: string): Promise<RunResult> =>
    runBuildctl([
      '--addr', (daemon as TestDaemon).addr, '--tlsdir', path.join((daemon as TestDaemon).certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
    ]);
  const url = (route: string): string => `http://${address}:${server.port}${route}`;

  /** What a step's network leaves in the daemon's state: sandbox records and IP leases. */
  async function leftovers(): Promise<{ sandboxes: string[]; leases: string[] }> {
    const net = path.join(user.home, 'root', 'net');
    const sandboxes = await fsp.readdir(path.join(net, 'sandboxes')).catch(() => [] as string[]);
    const leases: string[] = [];
    for (const network of await fsp.readdir(path.join(net, 'ipam')).catch(() => [] as string[])) {
      for (const n of await fsp.readdir(path.join(net, 'ipam', network)).catch(() => [] as string[])) {
        if (n !== 'lock' && !n.startsWith('last_reserved_ip')) leases.push(`${network}/${n}`);
      }
    }
    return { sandboxes, leases };
  }

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-net-'));
    await fsp.chmod(tmp, 0o755);
    await run('ip', ['link', 'add', 'name', link, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${address}/32`, 'dev', link]);
    await run('ip', ['link', 'set', link, 'up']);
    server = await startGatewayServer(address);
    registry = await startRegistry();
    busybox = (await pushBusyboxImage(registry.host)).ref;
    user = await createRootlessUser(path.join(tmp, 'home'));
    daemon = await startRootlessDaemon(user);
  });

  afterAll(async () => {
    const code = await daemon?.stop().catch((err: Error) => err.message);
    const leftProcesses = user ? await processesOf(user.uid) : [];
    const netFiles = user ? await fsp.readdir(path.join(user.home, 'root', 'net')).catch(() => [] as string[]) : [];
    await registry?.stop().catch(() => undefined);
    await server?.close().catch(() => undefined);
    await run('ip', ['link', 'del', link]).catch(() => undefined);
    const removed = await user?.remove().then(
      () => 'removed',
      (err: Error) => err.message,
    );
    const left = tmp ? await mountsUnder(tmp) : [];
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    // slirp4netns stopped with the daemon, and the bridge's namespace file went with it
    expect({ code, leftProcesses, uplinkFile: netFiles.filter((n) => n === 'uplink-ns'), removed, left }).toEqual({
      code: 0,
      leftProcesses: [],
      uplinkFile: [],
      removed: 'removed',
      left: [],
    });
  });

  test('says at start that steps reach the network, and a RUN fetches a page from the test server; nothing is left after', async () => {
    expect(daemon?.stderr()).toContain("rootless: RUN steps reach the network through a CNI bridge in buildd's own network namespace and slirp4netns (host loopback not reachable)");
    const ctx = await writeContext(path.join(tmp, 'fetch'), {
      Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/page')} && ip -o -4 addr show dev eth0\n`,
    });
    const res = await build(ctx);
    expect({ code: res.code, stderr: res.code === 0 ? '' : `${res.stderr}\n${daemon?.stderr() ?? ''}` }).toEqual({ code: 0, stderr: '' });
    expect(res.stderr).toContain(server.token);
    // the step's address on buildd's bridge, BuildKit's default subnet
    expect(res.stderr).toMatch(/eth0\s+inet 10\.10\.\d+\.\d+\/16/);
    expect(server.seen.get('/page')).toHaveLength(1);
    expect(await leftovers()).toEqual({ sandboxes: [], leases: [] });
  });

  test('RUN --network=none cannot reach the same server: loopback only', async () => {
    const before = server.seen.get('/page')?.length ?? 0;
    const ctx = await writeContext(path.join(tmp, 'none'), {
      Dockerfile: `FROM ${busybox}\nRUN --network=none wget -q -O - ${url('/page')}\n`,
    });
    const res = await build(ctx);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`wget: can't connect to remote host (${address}): Network is unreachable`);
    expect(server.seen.get('/page')?.length ?? 0).toBe(before);
    expect(await leftovers()).toEqual({ sandboxes: [], leases: [] });
  });

  test("a RUN cannot reach the host's loopback through slirp4netns (10.0.2.2)", async () => {
    // the registry listens on the host's 127.0.0.1; without --disable-host-loopback 10.0.2.2 is it
    const port = registry.host.split(':').pop() as string;
    const ctx = await writeContext(path.join(tmp, 'loopback'), {
      Dockerfile: `FROM ${busybox}\nRUN wget -q -O - http://10.0.2.2:${port}/v2/\n`,
    });
    const res = await build(ctx);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/wget: can't connect to remote host \(10\.0\.2\.2\): Network is unreachable/);
    expect(await leftovers()).toEqual({ sandboxes: [], leases: [] });
  });

  test('after a kill -9 of buildd inside rootlesskit during a networked RUN, slirp4netns exits too, and the next daemon clears the sandbox and lease and networks again', async () => {
    const held = path.join(tmp, 'held');
    await writeContext(held, { Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/hold')}\n` });
    const holding = build(held);
    await waitFor('the RUN to wait on /hold', async () => ((server.seen.get('/hold')?.length ?? 0) > 0 ? true : undefined), 120_000);
    expect((await leftovers()).sandboxes).toHaveLength(1);
    // the buildd that rootlesskit started: the one with the child marker in its environment
    const inner: number[] = [];
    for (const e of await fsp.readdir('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const env = await fsp.readFile(`/proc/${e}/environ`, 'utf8').catch(() => '');
      const status = await fsp.readFile(`/proc/${e}/status`, 'utf8').catch(() => '');
      if (env.split('\0').includes('BUILDD_ROOTLESS_CHILD=1') && /^Name:\s+node$/m.test(status)) inner.push(Number(e));
    }
    expect(inner).toHaveLength(1);
    process.kill(inner[0] as number, 'SIGKILL');
    expect((await holding).code).not.toBe(0);
    await (daemon as TestDaemon).stop();
    // nothing ran on: slirp4netns saw its exit fd close; the step's wget went with its container
    await server.close();
    await waitFor('slirp4netns to exit', async () => ((await processesOf(user.uid)).includes('slirp4netns') ? undefined : true), 60_000);
    server = await startGatewayServer(address);
    daemon = await startRootlessDaemon(user);
    expect(await leftovers()).toEqual({ sandboxes: [], leases: [] });
    const ctx = await writeContext(path.join(tmp, 'again'), { Dockerfile: `FROM ${busybox}\nRUN wget -q -O - ${url('/page')}\n` });
    const res = await build(ctx);
    expect({ code: res.code, stderr: res.code === 0 ? '' : `${res.stderr}\n${daemon.stderr()}` }).toEqual({ code: 0, stderr: '' });
    expect(res.stderr).toContain(server.token);
    expect(await leftovers()).toEqual({ sandboxes: [], leases: [] });
  });
});

describe('buildd --rootless: a tun device the user cannot open', () => {
  it('is named with its mode and owner, and the chmod that makes it usable', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-tun-'));
    await fsp.chmod(tmp, 0o755);
    const user = await createRootlessUser(path.join(tmp, 'home'));
    try {
      // a root-owned file of mode 0600 stands in for the 0600 device of some distributions
      const device = path.join(tmp, 'tun');
      await fsp.writeFile(device, '', { mode: 0o600 });
      const dist = path.resolve(__dirname, '..', '..', 'dist', 'buildd', 'rootless', 'slirp-uplink.js');
      const { stdout } = await run('setpriv', [
        '--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--',
        process.execPath, '-e', `require(${JSON.stringify(dist)}).tunProblem(${JSON.stringify(device)}).then((p) => process.stdout.write(String(p)))`,
      ]);
      expect(stdout).toBe(`${device} cannot be opened read-write by this user: EACCES (mode 0600, owner uid 0); as root: chmod 0666 ${device}`);
    } finally {
      await user.remove();
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});
