import { ALL_CAPABILITIES as CAP_BITS } from '../../../buildd/worker/oci-defaults';
import { capabilitiesFromMask, securitySections } from '../../../buildd/worker/oci-security';
import { buildOciSpec, mountDestinations, withDefaultPath, type OciSpecInput } from '../../../buildd/worker/oci-spec';
import { containerResolvConf } from '../../../buildd/worker/etc-files';
import { parseRuncErrors } from '../../../buildd/worker/runc-log';

const DOCKER_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

const input: OciSpecInput = {
  rootfs: '/var/lib/buildd/snapshots/7/fs',
  args: ['/bin/sh', '-c', 'make'],
  env: ['FOO=bar'],
  cwd: '/src',
  user: { uid: 1000, gid: 1000, additionalGids: [2000] },
  hostname: 'buildd',
  cgroupsPath: '/buildd/abc',
  etcFiles: { hosts: '/b/abc/hosts', resolvConf: '/b/abc/resolv.conf', hostname: '/b/abc/hostname' },
};

describe('buildOciSpec', () => {
  const spec = buildOciSpec(input);

  it('runs the process without a terminal, with args, env plus default PATH, cwd and user', () => {
    expect(spec.ociVersion).toMatch(/^1\.0\./);
    expect(spec.process.terminal).toBe(false);
    expect(spec.process.args).toEqual(['/bin/sh', '-c', 'make']);
    expect(spec.process.env).toEqual(['FOO=bar', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    expect(spec.process.cwd).toBe('/src');
    expect(spec.process.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [2000] });
  });

  it('sets no_new_privileges: a setuid binary or file capability cannot raise what the step may do', () => {
    expect(spec.process.noNewPrivileges).toBe(true);
  });

  it("gives Docker's default capabilities in bounding, effective and permitted only", () => {
    const caps = spec.process.capabilities;
    for (const set of [caps.bounding, caps.effective, caps.permitted]) expect(set).toEqual(DOCKER_CAPS);
    expect(caps.inheritable).toEqual([]);
    expect(caps.ambient).toEqual([]);
  });

  it('limits open files like containerd / BuildKit', () => {
    expect(spec.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 }]);
  });

  it('uses the rootfs writable, the hostname, and a per-container cgroup', () => {
    expect(spec.root).toEqual({ path: input.rootfs, readonly: false });
    expect(spec.hostname).toBe('buildd');
    expect(spec.linux.cgroupsPath).toBe('/buildd/abc');
  });

  it('creates new pid, ipc, uts, mount and network namespaces (no path: fresh ones)', () => {
    expect(spec.linux.namespaces.map((n) => n.type).sort()).toEqual(['ipc', 'mount', 'network', 'pid', 'uts']);
    for (const ns of spec.linux.namespaces) expect(Object.keys(ns)).toEqual(['type']);
  });

  it('mounts the standard filesystems with the expected types and options', () => {
    const byDest = new Map(spec.mounts.map((m) => [m.destination, m]));
    expect(byDest.get('/proc')?.type).toBe('proc');
    expect(byDest.get('/dev')).toMatchObject({ type: 'tmpfs', options: expect.arrayContaining(['mode=755', 'size=65536k']) });
    expect(byDest.get('/dev/pts')).toMatchObject({
      type: 'devpts',
      options: expect.arrayContaining(['newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']),
    });
    expect(byDest.get('/dev/shm')).toMatchObject({ type: 'tmpfs', options: expect.arrayContaining(['size=65536k']) });
    expect(byDest.get('/dev/mqueue')?.type).toBe('mqueue');
    expect(byDest.get('/sys')).toMatchObject({ type: 'sysfs', options: expect.arrayContaining(['ro', 'nosuid', 'noexec', 'nodev']) });
    expect(byDest.get('/sys/fs/cgroup')).toMatchObject({ type: 'cgroup', options: expect.arrayContaining(['ro']) });
  });

  it('bind-mounts the generated /etc files read-only from the bundle', () => {
    for (const [dest, src] of [
      ['/etc/hosts', '/b/abc/hosts'],
      ['/etc/resolv.conf', '/b/abc/resolv.conf'],
      ['/etc/hostname', '/b/abc/hostname'],
    ]) {
      expect(spec.mounts.find((m) => m.destination === dest)).toEqual({
        destination: dest,
        type: 'bind',
        source: src,
        options: expect.arrayContaining(['rbind', 'ro']),
      });
    }
  });

  it("masks and write-protects Docker's paths", () => {
    expect(spec.linux.maskedPaths).toEqual([
      '/proc/asound',
      '/proc/acpi',
      '/proc/interrupts',
      '/proc/kcore',
      '/proc/keys',
      '/proc/latency_stats',
      '/proc/timer_list',
      '/proc/timer_stats',
      '/proc/sched_debug',
      '/proc/scsi',
      '/sys/firmware',
      '/sys/devices/virtual/powercap',
    ]);
    expect(spec.linux.readonlyPaths).toEqual(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
  });

  it('lists every mount destination for the stub cleaner', () => {
    expect(mountDestinations(spec)).toEqual(spec.mounts.map((m) => m.destination));
    expect(mountDestinations(spec)).toContain('/etc/resolv.conf');
  });

  it('does not share arrays with its input', () => {
    const s = buildOciSpec(input);
    s.process.args.push('x');
    s.process.user.additionalGids?.push(1);
    expect(input.args).toHaveLength(3);
    expect(input.user.additionalGids).toEqual([2000]);
  });
});

describe('withDefaultPath', () => {
  it('keeps an explicit PATH, even an empty one', () => {
    expect(withDefaultPath(['PATH=/opt/bin'])).toEqual(['PATH=/opt/bin']);
    expect(withDefaultPath(['PATH='])).toEqual(['PATH=']);
  });
  it('does not take a variable merely ending in PATH for PATH', () => {
    expect(withDefaultPath(['GOPATH=/go'])).toHaveLength(2);
  });
});

describe('containerResolvConf', () => {
  it('keeps nameservers, search and options, and drops loopback resolvers', () => {
    const host = '# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch corp.example\noptions edns0 trust-ad\n';
    expect(containerResolvConf(host)).toBe('nameserver 10.0.0.2\nsearch corp.example\noptions edns0 trust-ad\n');
  });
  it('is empty when only a loopback resolver is configured', () => {
    expect(containerResolvConf('nameserver 127.0.0.53\n')).toBe('');
  });
});

describe('parseRuncErrors', () => {
  it('returns the error messages, without the "runc run failed" prefix, skipping other levels and garbage', () => {
    const log = [
      '{"level":"warning","msg":"deprecated","time":"t"}',
      'not json',
      '{"level":"error"}',
      '{"level":"error","msg":"runc run failed: unable to start container process: exec: \\"/bin/nope\\": stat /bin/nope: no such file or directory","time":"t"}',
    ].join('\n');
    expect(parseRuncErrors(log)).toEqual(['unable to start container process: exec: "/bin/nope": stat /bin/nope: no such file or directory']);
  });
});

describe('buildOciSpec network namespace', () => {
  it('makes a fresh loopback-only namespace without a netns path', () => {
    expect(buildOciSpec(input).linux.namespaces).toContainEqual({ type: 'network' });
  });

  it("joins a CNI sandbox's namespace by path", () => {
    const spec = buildOciSpec({ ...input, netnsPath: '/var/lib/buildd/net/sandboxes/abc/ns' });
    expect(spec.linux.namespaces.filter((n) => n.type === 'network')).toEqual([{ type: 'network', path: '/var/lib/buildd/net/sandboxes/abc/ns' }]);
  });
});

describe('buildOciSpec security', () => {
  const target = { arch: 'amd64', kernel: { major: 6, minor: 1 } };

  it("applies Docker's seccomp profile for the default capabilities (EPERM by default, no mount/unshare, clone3 ENOSYS)", () => {
    const seccomp = buildOciSpec({ ...input, seccompTarget: target }).linux.seccomp;
    expect(seccomp).toMatchObject({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] });
    const names = (action: string): string[] => (seccomp?.syscalls ?? []).filter((r) => r.action === action && !r.args).flatMap((r) => r.names);
    expect(names('SCMP_ACT_ALLOW')).toEqual(expect.arrayContaining(['read', 'execve', 'chroot', 'arch_prctl']));
    expect(names('SCMP_ACT_ALLOW')).not.toEqual(expect.arrayContaining(['mount']));
    expect(names('SCMP_ACT_ALLOW')).not.toContain('unshare');
    expect(seccomp?.syscalls.find((r) => r.names.includes('clone3'))).toEqual({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  });

  it('makes the filter for the host when no target is given', () => {
    const seccomp = buildOciSpec(input).linux.seccomp;
    expect(seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    if (process.arch === 'x64') expect(seccomp?.architectures[0]).toBe('SCMP_ARCH_X86_64');
  });

  it("'sandbox' is the default", () => {
    expect(buildOciSpec({ ...input, security: 'sandbox', seccompTarget: target })).toEqual(buildOciSpec({ ...input, seccompTarget: target }));
  });

  it("'insecure' switches every confinement off together: the daemon's capabilities, no seccomp, masks or read-only paths, new privileges allowed", () => {
    const spec = buildOciSpec({ ...input, security: 'insecure' });
    expect(spec.linux.seccomp).toBeUndefined();
    expect(spec.linux.maskedPaths).toEqual([]);
    expect(spec.linux.readonlyPaths).toEqual([]);
    expect(spec.process.noNewPrivileges).toBe(false);
    expect(spec.process.capabilities.bounding).toEqual(securitySections('insecure').capabilities);
    expect(spec.process.capabilities.effective).toEqual(spec.process.capabilities.bounding);
    expect(spec.process.capabilities.ambient).toEqual([]);
  });
});

describe('securitySections', () => {
  it("gives an insecure step every capability the daemon holds, and no more (runc could not grant it)", () => {
    const daemonCaps = (): string[] => ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_NET_ADMIN'];
    expect(securitySections('insecure', undefined, daemonCaps).capabilities).toEqual(['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_NET_ADMIN']);
    expect(securitySections('sandbox', { arch: 'amd64', kernel: { major: 6, minor: 1 } }, daemonCaps).capabilities).toEqual(DOCKER_CAPS);
  });

  it('reads capability names from a /proc status mask by bit', () => {
    // all 41 but CAP_SYS_RESOURCE (bit 24), as in a container that dropped it
    const caps = capabilitiesFromMask('000001fffeffffff');
    expect(caps).toHaveLength(40);
    expect(caps).not.toContain('CAP_SYS_RESOURCE');
    expect(caps.slice(0, 3)).toEqual(['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH']);
    expect(caps[caps.length - 1]).toBe('CAP_CHECKPOINT_RESTORE');
    expect(capabilitiesFromMask('00000000a80425fb')).toEqual(DOCKER_CAPS.slice().sort((a, b) => CAP_BITS.indexOf(a) - CAP_BITS.indexOf(b)));
    expect(capabilitiesFromMask('0')).toEqual([]);
  });
});

describe('buildOciSpec resources', () => {
  it('sets no cgroup limits unless given', () => {
    expect(buildOciSpec(input).linux.resources).toBeUndefined();
  });

  it('writes the given limits as linux.resources, without sharing the object', () => {
    const resources = { memory: { limit: 67108864, swap: 67108864 }, pids: { limit: 100 }, cpu: { quota: 150000, period: 100000 } };
    const spec = buildOciSpec({ ...input, resources });
    expect(spec.linux.resources).toEqual(resources);
    expect(spec.linux.resources).not.toBe(resources);
  });
});
