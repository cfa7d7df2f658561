import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * `rm -rf` that also works without root when the tree holds directories of mode 0555 (a
 * client's locals keep their modes): on EACCES/EPERM it makes directories writable (never
 * following symlinks) and tries again.
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await fsp.rm(dir, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    await makeWritable(dir);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function makeWritable(dir: string): Promise<void> {
  const st = await fsp.lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await fsp.chmod(dir, 0o700);
  for (const name of await fsp.readdir(dir)) await makeWritable(path.join(dir, name));
}
