import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { getAttribute, listAttributes, setAttribute } from '@napi-rs/xattr';
import { BuildError } from '../solver/build-error';

const PROBE_NAME = 'trusted.buildd.probe';

/** One probe per directory: the answer depends on the process and the filesystem, not the layer. */
const probed = new Map<string, Promise<void>>();

/**
 * Proves that this process really reads trusted.* attributes in `dir`'s filesystem, by writing
 * one on a scratch file there and reading it back. The kernel answers a trusted.* read with
 * "no such attribute" to a process without CAP_SYS_ADMIN in the initial user namespace (a
 * capability set shows the bit inside a user namespace too, so it proves nothing), and overlay
 * marks opaque directories with trusted.overlay.opaque: without this proof an export would drop
 * those markers silently and deleted files would reappear. Fails with `permission-denied`.
 * The result is kept for the life of the process; a failed probe is tried again next time.
 */
export function assertTrustedXattrsReadable(dir: string, what: string): Promise<void> {
  let p = probed.get(dir);
  if (!p) {
    p = probe(dir, what);
    probed.set(dir, p);
    p.catch(() => probed.delete(dir));
  }
  return p;
}

async function probe(dir: string, what: string): Promise<void> {
  const file = path.join(dir, `.trusted-probe-${randomBytes(6).toString('hex')}`);
  const value = randomBytes(8);
  const fail = (why: string): BuildError =>
    new BuildError('permission-denied', `Cannot read ${what} in ${dir}: ${why}; buildd needs CAP_SYS_ADMIN in the initial user namespace (run it as root)`);
  await fsp.writeFile(file, '', { flag: 'wx', mode: 0o600 });
  try {
    try {
      await setAttribute(file, PROBE_NAME, value);
    } catch (err) {
      throw fail(`this process cannot write trusted.* attributes (${(err as Error).message})`);
    }
    // listAttributes reports failures; getAttribute alone would answer null for them.
    const names = await listAttributes(file);
    const back = names.includes(PROBE_NAME) ? await getAttribute(file, PROBE_NAME) : null;
    if (back === null || !back.equals(value)) throw fail('the kernel hides trusted.* attributes from this process');
  } finally {
    await fsp.rm(file, { force: true });
  }
}
