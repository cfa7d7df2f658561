import { promises as fsp } from 'node:fs';
import type { InsecureHost, OciDevice } from './insecure-spec';

/** Capability names by bit number, as in linux/capability.h (up to CAP_CHECKPOINT_RESTORE). */
const CAPABILITY_BITS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/** The devices BuildKit's insecure mode adds (security.WithInsecureSpec), where the host has them. */
const INSECURE_DEVICES = ['/dev/kmsg', '/dev/cuse', '/dev/fuse', '/dev/kvm', '/dev/net/tun', '/dev/loop-control'];
/** loop devices for `mount -o loop`; BuildKit adds the next free ones, we add those that exist among the first few */
const LOOP_DEVICES = Array.from({ length: 8 }, (_, i) => `/dev/loop${i}`);

/**
 * What an insecure step may have of the host: the capabilities buildd itself holds (as
 * BuildKit: a capability the daemon lacks cannot be granted, and asking runc for it fails) and
 * the host's devices BuildKit passes in that mode. Read once per daemon by the caller.
 */
export async function readHostPrivileges(statusFile = '/proc/self/status'): Promise<InsecureHost> {
  const status = await fsp.readFile(statusFile, 'utf8');
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const capabilities = hex === undefined ? [] : capabilityNames(BigInt(`0x${hex}`));
  const devices: OciDevice[] = [];
  for (const p of [...INSECURE_DEVICES, ...LOOP_DEVICES]) {
    const st = await fsp.stat(p).catch(() => undefined);
    if (st === undefined || !(st.isCharacterDevice() || st.isBlockDevice())) continue;
    devices.push({
      path: p,
      type: st.isCharacterDevice() ? 'c' : 'b',
      // glibc's major()/minor() for the values a Number holds exactly
      major: Math.floor(st.rdev / 256) & 0xfff,
      minor: (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00),
      fileMode: st.mode & 0o777,
      uid: 0,
      gid: 0,
    });
  }
  return { capabilities, devices };
}

/** The names of the bits set in a capability mask (unknown bits are skipped). */
export function capabilityNames(mask: bigint): string[] {
  return CAPABILITY_BITS.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}
