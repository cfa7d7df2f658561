import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../../solver/build-error';
import { parseConflist, type CniConflist } from '../../buildd/worker/network/cni-conflist';
import { CniSandboxes } from '../../buildd/worker/network/cni-sandboxes';
import { isNetnsMounted } from '../../buildd/worker/network/netns';

const run = promisify(execFile);
const BIN = ['/usr/lib/cni'];

jest.setTimeout(60_000);

/** CniSandboxes with Debian's real plugins, on a bridge of this test's own. */
describe('CniSandboxes', () => {
  const bridge = `bds${randomBytes(3).toString('hex')}`;
  let dir: string;

  const conflist = (ipam: Record<string, unknown>): CniConflist =>
    parseConflist({ cniVersion: '1.0.0', name: bridge, plugins: [{ type: 'loopback' }, { type: 'bridge', bridge, isGateway: true, ipam }] }, 'test');

  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-sandboxes-'));
  });
  afterEach(async () => {
    await run('ip', ['link', 'del', bridge]).catch(() => undefined);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const ports = async (): Promise<string[]> => {
    const { stdout } = await run('ip', ['-o', 'link', 'show', 'master', bridge]).catch(() => ({ stdout: '' }));
    return stdout.split('\n').filter((l) => l.trim());
  };

  test('acquire gives a namespace with eth0 on the subnet and loopback up; release removes namespace, veth and lease', async () => {
    const dataDir = path.join(dir, 'ipam');
    const sandboxes = new CniSandboxes({ stateDir: path.join(dir, 'net'), conflist: conflist({ type: 'host-local', ranges: [[{ subnet: '10.214.7.0/24' }]], dataDir }), binDirs: BIN });
    const sb = await sandboxes.acquire('step-1', '["true"]');
    expect(sb.address).toMatch(/^10\.214\.7\.\d+$/);
    expect(await isNetnsMounted(sb.netnsPath)).toBe(true);
    const { stdout } = await run('nsenter', [`--net=${sb.netnsPath}`, 'ip', '-o', '-4', 'addr']);
    expect(stdout).toMatch(/lo\s+inet 127\.0\.0\.1\/8/);
    expect(stdout).toContain(`eth0    inet ${sb.address}/24`);
    expect(await ports()).toHaveLength(1);
    expect(await fsp.readdir(path.join(dataDir, bridge))).toContain(sb.address);
    await sb.release();
    expect(await ports()).toEqual([]);
    expect(await fsp.readdir(path.join(dataDir, bridge))).not.toContain(sb.address);
    expect(await fsp.readdir(path.join(dir, 'net', 'sandboxes'))).toEqual([]);
    expect(await isNetnsMounted(sb.netnsPath)).toBe(false);
  });

  test("a failing ADD is an error naming the step and the plugin with its message, and what the chain did is undone", async () => {
    const sandboxes = new CniSandboxes({
      stateDir: path.join(dir, 'net'),
      conflist: conflist({ type: 'host-local', ranges: [[{ subnet: '10.214.8.0/33' }]], dataDir: path.join(dir, 'ipam') }),
      binDirs: BIN,
    });
    const err = await sandboxes.acquire('step-2', '["wget","x"]').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('internal');
    expect((err as BuildError).message).toMatch(/^Cannot set up the network of step \["wget","x"\]: bridge: .*10\.214\.8\.0\/33.* \(CNI error code \d+\)$/);
    // the bridge plugin's DEL refuses the same config, so the record stays for the next start's
    // sweep, which tries once more and then drops it; the namespace and its veth are gone now
    expect(await fsp.readdir(path.join(dir, 'net', 'sandboxes'))).toEqual(['step-2']);
    expect(await isNetnsMounted(path.join(dir, 'net', 'sandboxes', 'step-2', 'ns'))).toBe(false);
    expect(await ports()).toEqual([]);
    await new CniSandboxes({ stateDir: path.join(dir, 'net'), conflist: conflist({ type: 'host-local' }), binDirs: BIN }).sweep();
    expect(await fsp.readdir(path.join(dir, 'net', 'sandboxes'))).toEqual([]);
  });

  test('check names a plugin that is not installed', async () => {
    const sandboxes = new CniSandboxes({
      stateDir: path.join(dir, 'net'),
      conflist: parseConflist({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'loopback' }, { type: 'no-such-plugin' }] }, 'test'),
      binDirs: BIN,
    });
    await expect(sandboxes.check()).rejects.toThrow('Cannot set up CNI networking: plugin no-such-plugin not found in /usr/lib/cni (see --cni-binary-dir)');
  });

  test('sweep DELs a sandbox whose namespace was never mounted (kill -9 during unshare) and one left whole', async () => {
    const dataDir = path.join(dir, 'ipam');
    const list = conflist({ type: 'host-local', ranges: [[{ subnet: '10.214.9.0/24' }]], dataDir });
    const first = new CniSandboxes({ stateDir: path.join(dir, 'net'), conflist: list, binDirs: BIN });
    const whole = await first.acquire('left-whole', '["true"]');
    // what a daemon killed between writing the record and unshare leaves
    const half = path.join(dir, 'net', 'sandboxes', 'left-half');
    await fsp.mkdir(half);
    await fsp.writeFile(path.join(half, 'attachment.json'), JSON.stringify({ containerId: 'left-half', ifname: 'eth0', conflist: list }));
    await fsp.writeFile(path.join(half, 'ns'), '');
    expect(await ports()).toHaveLength(1);
    const next = new CniSandboxes({ stateDir: path.join(dir, 'net'), conflist: list, binDirs: BIN });
    expect((await next.sweep()).sort()).toEqual(['left-half', 'left-whole']);
    expect(await fsp.readdir(path.join(dir, 'net', 'sandboxes'))).toEqual([]);
    expect(await ports()).toEqual([]);
    expect(await fsp.readdir(path.join(dataDir, bridge))).not.toContain(whole.address);
    expect(await isNetnsMounted(whole.netnsPath)).toBe(false);
  });

  test('a pool keeps sandboxes ready: a step takes one at once, a new one is made, close tears all down', async () => {
    const dataDir = path.join(dir, 'ipam');
    const sandboxes = new CniSandboxes({
      stateDir: path.join(dir, 'net'),
      conflist: conflist({ type: 'host-local', ranges: [[{ subnet: '10.214.10.0/24' }]], dataDir }),
      binDirs: BIN,
      poolSize: 2,
    });
    sandboxes.fill();
    await sandboxes.settled();
    expect(await ports()).toHaveLength(2);
    const pooled = (await fsp.readdir(path.join(dir, 'net', 'sandboxes'))).sort();
    expect(pooled).toEqual([expect.stringMatching(/^buildd-pool-/), expect.stringMatching(/^buildd-pool-/)]);
    const sb = await sandboxes.acquire('step-p', '["true"]');
    // the step got one of the pool's namespaces, and the pool is topped up behind it
    expect(pooled.map((id) => path.join(dir, 'net', 'sandboxes', id, 'ns'))).toContain(sb.netnsPath);
    await sandboxes.settled();
    expect(await ports()).toHaveLength(3);
    await sb.release();
    expect(await ports()).toHaveLength(2);
    await sandboxes.close();
    expect(await ports()).toEqual([]);
    expect(await fsp.readdir(path.join(dir, 'net', 'sandboxes'))).toEqual([]);
    expect((await fsp.readdir(path.join(dataDir, bridge))).filter((n) => /^10\./.test(n))).toEqual([]);
    await expect(sandboxes.acquire('late', '["true"]')).rejects.toThrow('Cannot set up the network of step ["true"]: the daemon is shutting down');
  });
});
