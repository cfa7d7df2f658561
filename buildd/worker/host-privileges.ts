import { promises as fsp } from 'node:fs';
import type { InsecureHost, OciDevice } from './insecure-spec';
import { ALL_CAPABILITIES } from './oci-defaults';

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
  return ALL_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}
