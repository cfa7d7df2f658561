import { promises as fsp } from 'node:fs';

/** The uid_map of the initial user namespace: every id maps to itself. */
const INITIAL_MAP = /^\s*0\s+0\s+4294967295\s*$/;

/**
 * Whether this process runs in a user namespace other than the initial one, read from
 * /proc/self/uid_map (as runc's userns.RunningInUserNS). Inside rootlesskit, buildd is uid 0
 * of such a namespace.
 */
export async function inUserNamespace(): Promise<boolean> {
  const map = await fsp.readFile('/proc/self/uid_map', 'utf8');
  return !INITIAL_MAP.test(map.trim());
}
