import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { getAttribute, listAttributes, setAttribute } from '@napi-rs/xattr';
import { BuildError } from '../solver/build-error';

/**
 * Where overlayfs keeps its markers (opaque, redirect, origin): `trusted.overlay.*` when mounted
 * by root of the initial user namespace, `user.overlay.*` with the `userxattr` mount option,
 * which a mount inside a user namespace needs (kernel 5.11 and later).
 */
export type OverlayXattrNamespace = 'trusted' | 'user';

/** One probe per directory and namespace: the answer depends on the process and the filesystem, not the layer. */
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
  return assertOverlayXattrsReadable(dir, 'trusted', what);
}

/**
 * The same proof for the namespace the snapshotter's overlay mounts use: `trusted` as above;
 * `user` (rootless, `userxattr` mounts) proves that the file system keeps user.* attributes,
 * without which overlay cannot record opaque directories at all.
 */
export function assertOverlayXattrsReadable(dir: string, namespace: OverlayXattrNamespace, what: string): Promise<void> {
  const key = `${namespace}\0${dir}`;
  let p = probed.get(key);
  if (!p) {
    p = probe(dir, namespace, what);
    probed.set(key, p);
    p.catch(() => probed.delete(key));
  }
  return p;
}

async function probe(dir: string, namespace: OverlayXattrNamespace, what: string): Promise<void> {
  const probeName = `${namespace}.buildd.probe`;
  const file = path.join(dir, `.${namespace}-probe-${randomBytes(6).toString('hex')}`);
  const value = randomBytes(8);
  const remedy =
    namespace === 'trusted'
      ? 'buildd needs CAP_SYS_ADMIN in the initial user namespace (run it as root)'
      : "buildd --rootless needs a file system that keeps user.* attributes under its root (ext4, xfs, btrfs; tmpfs since Linux 6.6)";
  const fail = (why: string): BuildError => new BuildError('permission-denied', `Cannot read ${what} in ${dir}: ${why}; ${remedy}`);
  await fsp.writeFile(file, '', { flag: 'wx', mode: 0o600 });
  try {
    try {
      await setAttribute(file, probeName, value);
    } catch (err) {
      throw fail(`this process cannot write ${namespace}.* attributes (${(err as Error).message})`);
    }
    // listAttributes reports failures; getAttribute alone would answer null for them.
    const names = await listAttributes(file);
    const back = names.includes(probeName) ? await getAttribute(file, probeName) : null;
    if (back === null || !back.equals(value)) throw fail(`the kernel hides ${namespace}.* attributes from this process`);
  } finally {
    await fsp.rm(file, { force: true });
  }
}
