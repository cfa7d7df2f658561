import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { capabilityNames, readHostPrivileges } from '../../../buildd/worker/host-privileges';
import type { InsecureHost } from '../../../buildd/worker/insecure-spec';
import { buildOciSpec, type OciSpecInput } from '../../../buildd/worker/oci-spec';
import { writeEtcFiles } from '../../../buildd/worker/etc-files';

const input: OciSpecInput = {
  rootfs: '/var/lib/buildd/snapshots/7/fs',
  args: ['/bin/sh', '-c', 'make'],
  env: [],
  cwd: '/',
  user: { uid: 0, gid: 0, additionalGids: [] },
  hostname: 'buildd',
  cgroupsPath: '/buildd/abc',
  etcFiles: { hosts: '/b/abc/hosts', resolvConf: '/b/abc/resolv.conf', hostname: '/b/abc/hostname' },
};

const host: InsecureHost = {
  capabilities: ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_NET_ADMIN'],
  devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o600, uid: 0, gid: 0 }],
};

describe('RUN --network=host in the OCI spec', () => {
  it('has no network namespace entry, so the step stays in the daemon\'s namespace', () => {
    const spec = buildOciSpec({ ...input, hostNetwork: true, netnsPath: '/var/run/netns/x' });
    expect(spec.linux.namespaces.map((n) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount']);
  });

  it('keeps a network namespace for the other modes', () => {
    expect(buildOciSpec(input).linux.namespaces).toContainEqual({ type: 'network' });
    expect(buildOciSpec({ ...input, netnsPath: '/n' }).linux.namespaces).toContainEqual({ type: 'network', path: '/n' });
  });
});

describe('RUN --security=insecure in the OCI spec', () => {
  const sandbox = buildOciSpec(input);
  const spec = buildOciSpec({ ...input, insecure: host }) as ReturnType<typeof buildOciSpec> & {
    linux: { devices: unknown[]; resources: { devices: unknown[] }; seccomp?: unknown };
  };

  it("gives every capability the daemon holds, in every set (ambient too, for a non-root USER)", () => {
    const caps = spec.process.capabilities;
    for (const set of [caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient]) expect(set).toEqual(host.capabilities);
  });

  it('masks nothing, makes nothing read-only, and leaves /sys and the cgroup fs writable', () => {
    expect(sandbox.linux.maskedPaths.length).toBeGreaterThan(0);
    expect(spec.linux.maskedPaths).toEqual([]);
    expect(spec.linux.readonlyPaths).toEqual([]);
    const opts = (dest: string) => spec.mounts.find((m) => m.destination === dest)?.options;
    expect(opts('/sys')).not.toContain('ro');
    expect(opts('/sys/fs/cgroup')).not.toContain('ro');
    expect(sandbox.mounts.find((m) => m.destination === '/sys')?.options).toContain('ro');
  });

  it("opens the device cgroup and adds the host's devices, without a seccomp filter", () => {
    expect(spec.linux.devices).toEqual(host.devices);
    expect(spec.linux.resources.devices).toEqual([
      { allow: true, type: 'c', access: 'rwm' },
      { allow: true, type: 'b', access: 'rwm' },
    ]);
    expect(spec.linux.seccomp).toBeUndefined();
  });

  it('drops the seccomp filter of the sandbox spec', async () => {
    const { withInsecureSecurity } = await import('../../../buildd/worker/insecure-spec');
    expect(sandbox.linux.seccomp).toMatchObject({ defaultAction: 'SCMP_ACT_ERRNO' });
    expect(withInsecureSecurity(sandbox, host).linux).not.toHaveProperty('seccomp');
  });
});

describe('host privileges', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-privs-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('names capability bits as linux/capability.h does', () => {
    expect(capabilityNames(0n)).toEqual([]);
    expect(capabilityNames(0b101n)).toEqual(['CAP_CHOWN', 'CAP_DAC_READ_SEARCH']);
    expect(capabilityNames(1n << 21n)).toEqual(['CAP_SYS_ADMIN']);
    // a daemon without CAP_SYS_RESOURCE (bit 24) cannot lend it
    expect(capabilityNames(0x1fffeffffffn)).not.toContain('CAP_SYS_RESOURCE');
    expect(capabilityNames(0x1fffeffffffn)).toHaveLength(40);
  });

  it("reads the daemon's effective capabilities from its status file", async () => {
    const status = path.join(dir, 'status');
    await fsp.writeFile(status, 'Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t0000000000200001\nCapBnd:\t000001ffffffffff\n');
    expect((await readHostPrivileges(status)).capabilities).toEqual(['CAP_CHOWN', 'CAP_SYS_ADMIN']);
  });
});

describe('/etc files of a host-network step', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-etc-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it("keeps the host's resolv.conf as it is, loopback resolvers included (BuildKit's host mode)", async () => {
    const hostConf = path.join(dir, 'host-resolv.conf');
    await fsp.writeFile(hostConf, '# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n');
    const bundle = path.join(dir, 'bundle');
    await fsp.mkdir(bundle);
    const files = await writeEtcFiles(bundle, 'buildd', hostConf, path.join(dir, 'none'), { hostNetwork: true });
    expect(await fsp.readFile(files.resolvConf, 'utf8')).toBe('# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n');
    expect(await fsp.readFile(files.hosts, 'utf8')).toMatch(/^127\.0\.0\.1\tlocalhost buildd\n/);
    // the sandbox network drops the loopback resolver, which is not reachable from its namespace
    const sandboxBundle = path.join(dir, 'sandbox');
    await fsp.mkdir(sandboxBundle);
    const sandbox = await writeEtcFiles(sandboxBundle, 'buildd', hostConf, path.join(dir, 'none'));
    expect(await fsp.readFile(sandbox.resolvConf, 'utf8')).not.toContain('127.0.0.53');
  });
});
