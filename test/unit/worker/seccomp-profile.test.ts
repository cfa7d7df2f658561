import { DEFAULT_CAPABILITIES } from '../../../buildd/worker/oci-defaults';
import {
  DEFAULT_SECCOMP_PROFILE,
  dockerArch,
  parseKernelRelease,
  seccompForContainer,
  type OciSeccomp,
  type SeccompTarget,
} from '../../../buildd/worker/seccomp-profile';

const amd64: SeccompTarget = { arch: 'amd64', capabilities: DEFAULT_CAPABILITIES, kernel: { major: 6, minor: 1 } };

/** every action and errno a syscall name gets, in rule order */
function rulesFor(s: OciSeccomp, name: string): { action: string; errnoRet?: number; args?: unknown }[] {
  return s.syscalls.filter((r) => r.names.includes(name)).map((r) => ({ action: r.action, errnoRet: r.errnoRet, args: r.args }));
}
const allowed = (s: OciSeccomp, name: string): boolean => rulesFor(s, name).some((r) => r.action === 'SCMP_ACT_ALLOW' && r.args === undefined);

describe("Docker's default seccomp profile as data", () => {
  it('denies by default with EPERM', () => {
    expect(DEFAULT_SECCOMP_PROFILE.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(DEFAULT_SECCOMP_PROFILE.defaultErrnoRet).toBe(1);
  });

  it('allows the everyday syscalls unconditionally', () => {
    const s = seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64);
    for (const name of ['read', 'write', 'openat', 'execve', 'fork', 'vfork', 'wait4', 'chown', 'mknod', 'setuid', 'capset', 'statx', 'faccessat2']) {
      expect([name, allowed(s, name)]).toEqual([name, true]);
    }
  });
});

describe('seccompForContainer', () => {
  it("filters amd64's native, x86 and x32 syscalls", () => {
    expect(seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64).architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    expect(seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, arch: 'arm64' }).architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    // an architecture the profile does not map: runc filters the native one only
    expect(seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, arch: 'ppc64le' }).architectures).toEqual([]);
  });

  it('keeps architecture-specific rules for their architecture only', () => {
    const x = seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64);
    const arm = seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, arch: 'arm64' });
    expect(allowed(x, 'arch_prctl')).toBe(true);
    expect(allowed(x, 'modify_ldt')).toBe(true);
    expect(allowed(arm, 'arch_prctl')).toBe(false);
    expect(allowed(arm, 'set_tls')).toBe(true);
    expect(allowed(x, 'set_tls')).toBe(false);
  });

  it("without CAP_SYS_ADMIN: no mount, unshare or setns, clone only without namespace flags, clone3 fails with ENOSYS", () => {
    const s = seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64);
    for (const name of ['mount', 'umount2', 'unshare', 'setns', 'bpf', 'keyctl', 'add_key', 'reboot', 'init_module']) {
      expect([name, allowed(s, name)]).toEqual([name, false]);
    }
    // 0x7E020000: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET must all be clear
    expect(rulesFor(s, 'clone')).toEqual([{ action: 'SCMP_ACT_ALLOW', errnoRet: undefined, args: [{ index: 0, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }] }]);
    expect(rulesFor(s, 'clone3')).toEqual([{ action: 'SCMP_ACT_ERRNO', errnoRet: 38, args: undefined }]);
  });

  it('with CAP_SYS_ADMIN: mount, unshare and clone3 are allowed, and the ENOSYS and masked-clone rules are gone', () => {
    const s = seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, capabilities: [...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'] });
    for (const name of ['mount', 'unshare', 'setns', 'clone', 'clone3']) expect([name, allowed(s, name)]).toEqual([name, true]);
    expect(rulesFor(s, 'clone3').some((r) => r.action === 'SCMP_ACT_ERRNO')).toBe(false);
    expect(rulesFor(s, 'clone').some((r) => r.args !== undefined)).toBe(false);
  });

  it("follows the step's capabilities: chroot with CAP_SYS_CHROOT (a default one), ptrace extras with CAP_SYS_PTRACE", () => {
    const s = seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64);
    expect(allowed(s, 'chroot')).toBe(true);
    expect(allowed(s, 'kcmp')).toBe(false);
    const without = seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, capabilities: DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_SYS_CHROOT') });
    expect(allowed(without, 'chroot')).toBe(false);
    expect(allowed(seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, capabilities: ['CAP_SYS_PTRACE'] }), 'kcmp')).toBe(true);
  });

  it('allows ptrace from kernel 4.8 on only, and socket families but AF_VSOCK (40)', () => {
    expect(allowed(seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64), 'ptrace')).toBe(true);
    expect(allowed(seccompForContainer(DEFAULT_SECCOMP_PROFILE, { ...amd64, kernel: { major: 4, minor: 4 } }), 'ptrace')).toBe(false);
    const socket = rulesFor(seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64), 'socket');
    expect(socket.map((r) => r.args)).toEqual([
      [{ index: 0, value: 38, op: 'SCMP_CMP_LT' }],
      [{ index: 0, value: 39, op: 'SCMP_CMP_EQ' }],
      [{ index: 0, value: 40, op: 'SCMP_CMP_GT' }],
    ]);
  });

  it('writes only what runc reads (no includes, excludes or comments) and shares nothing with the profile', () => {
    const s = seccompForContainer(DEFAULT_SECCOMP_PROFILE, amd64);
    expect(Object.keys(s).sort()).toEqual(['architectures', 'defaultAction', 'defaultErrnoRet', 'syscalls']);
    for (const r of s.syscalls) for (const k of Object.keys(r)) expect(['names', 'action', 'errnoRet', 'args']).toContain(k);
    s.syscalls[0]?.names.push('x');
    expect(DEFAULT_SECCOMP_PROFILE.syscalls[0]?.names).not.toContain('x');
  });
});

describe('host target helpers', () => {
  it("names Node's architectures as Docker does", () => {
    expect(dockerArch('x64', 'LE')).toBe('amd64');
    expect(dockerArch('ia32', 'LE')).toBe('x86');
    expect(dockerArch('arm64', 'LE')).toBe('arm64');
    expect(dockerArch('ppc64', 'LE')).toBe('ppc64le');
    expect(dockerArch('ppc64', 'BE')).toBe('ppc64');
    expect(dockerArch('s390x', 'BE')).toBe('s390x');
  });

  it('reads major.minor of a kernel release, 0.0 when it cannot', () => {
    expect(parseKernelRelease('6.1.0-18-amd64')).toEqual({ major: 6, minor: 1 });
    expect(parseKernelRelease('3.12-1-amd64')).toEqual({ major: 3, minor: 12 });
    expect(parseKernelRelease('weird')).toEqual({ major: 0, minor: 0 });
  });
});
