import { buildOciSpec, type OciSpecInput } from '../../../buildd/worker/oci-spec';
import { isProcMountFailure, withoutProcessSandbox } from '../../../buildd/worker/process-mode';

const input: OciSpecInput = {
  rootfs: '/var/lib/buildd/snapshots/7/fs',
  args: ['/bin/sh', '-c', 'make'],
  env: [],
  cwd: '/',
  user: { uid: 0, gid: 0, additionalGids: [] },
  hostname: 'buildkitsandbox',
  etcFiles: { hosts: '/b/abc/hosts', resolvConf: '/b/abc/resolv.conf', hostname: '/b/abc/hostname' },
};
const host = { capabilities: ['CAP_SYS_ADMIN', 'CAP_CHOWN'], devices: [] };

describe("a step's spec without a process sandbox (--oci-worker-no-process-sandbox)", () => {
  const sandbox = buildOciSpec(input);
  const bare = buildOciSpec({ ...input, processMode: 'no-sandbox' });

  it('is the sandbox spec by default', () => {
    expect(buildOciSpec({ ...input, processMode: 'sandbox' })).toEqual(sandbox);
    expect(sandbox.linux.namespaces.map((n) => n.type)).toContain('pid');
    expect(sandbox.mounts.find((m) => m.destination === '/proc')).toMatchObject({ type: 'proc' });
  });

  it("has no PID namespace, the daemon's /proc bound first (rbind) and no fresh procfs, as BuildKit's withBoundProc", () => {
    expect(bare.linux.namespaces.map((n) => n.type)).toEqual(['ipc', 'uts', 'mount', 'network']);
    expect(bare.mounts[0]).toEqual({ destination: '/proc', type: 'bind', source: '/proc', options: ['rbind'] });
    expect(bare.mounts.filter((m) => m.destination === '/proc' || m.type === 'proc')).toHaveLength(1);
  });

  it("binds the daemon's /sys (read-only) instead of a fresh sysfs, which masks refuse just the same", () => {
    expect(bare.mounts.find((m) => m.destination === '/sys')).toEqual({ destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
    expect(bare.mounts.some((m) => m.type === 'sysfs')).toBe(false);
    // the rest of the mounts as in the sandbox, in the same order
    const rest = (s: typeof bare): string[] => s.mounts.filter((m) => m.destination !== '/proc' && m.destination !== '/sys').map((m) => `${m.destination}:${m.type}`);
    expect(rest(bare)).toEqual(rest(sandbox));
  });

  it('masks and makes read-only nothing under /proc, and keeps the masks of /sys', () => {
    expect(bare.linux.maskedPaths.filter((p) => p.startsWith('/proc'))).toEqual([]);
    expect(bare.linux.readonlyPaths.filter((p) => p.startsWith('/proc'))).toEqual([]);
    expect(bare.linux.maskedPaths).toEqual(sandbox.linux.maskedPaths.filter((p) => !p.startsWith('/proc/')));
    expect(bare.linux.maskedPaths).toContain('/sys/firmware');
  });

  it('keeps everything else of the sandbox: capabilities, seccomp, no_new_privileges, a network namespace to join', () => {
    expect(bare.process).toEqual(sandbox.process);
    expect(bare.linux.seccomp).toEqual(sandbox.linux.seccomp);
    const joined = buildOciSpec({ ...input, processMode: 'no-sandbox', netnsPath: '/run/netns/x' });
    expect(joined.linux.namespaces).toContainEqual({ type: 'network', path: '/run/netns/x' });
    const hostNet = buildOciSpec({ ...input, processMode: 'no-sandbox', hostNetwork: true });
    expect(hostNet.linux.namespaces.map((n) => n.type)).toEqual(['ipc', 'uts', 'mount']);
  });

  it('leaves an insecure step its writable /sys', () => {
    const insecure = buildOciSpec({ ...input, processMode: 'no-sandbox', insecure: host });
    expect(insecure.mounts.find((m) => m.destination === '/sys')?.options).toEqual(['rbind', 'nosuid', 'noexec', 'nodev']);
    expect(insecure.linux.maskedPaths).toEqual([]);
  });

  it('does not change the spec it is given', () => {
    const before = JSON.stringify(sandbox);
    withoutProcessSandbox(sandbox);
    expect(JSON.stringify(sandbox)).toBe(before);
  });
});

describe('isProcMountFailure', () => {
  it("recognises runc's message for a procfs it may not mount, and nothing else", () => {
    expect(isProcMountFailure('unable to start container process: error during container init: error mounting "proc" to rootfs at "/proc": mount proc:/proc (via /proc/self/fd/6), flags: 0xe: operation not permitted')).toBe(true);
    expect(isProcMountFailure('error mounting "sysfs" to rootfs at "/sys": mount sysfs:/sys (via /proc/self/fd/6), flags: 0xf: operation not permitted')).toBe(false);
    expect(isProcMountFailure('exec: "nope": executable file not found in $PATH')).toBe(false);
  });
});
