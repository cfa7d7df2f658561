import { execFile } from 'node:child_process';
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

/**
 * {@link removeTree} for a tree nothing waits on (an old generation of a kept local: 20,000
 * entries): `rm -rf` in a child process at the lowest CPU priority, so its unlink calls
 * neither hold this thread nor, through the thread pool and the garbage their promises make,
 * slow the build that runs meanwhile (in-process it took 0.7 s of a one-file rebuild's main
 * thread, see the commit). Falls back to removeTree when the program fails (say, 0555
 * directories without root).
 */
export async function removeTreeAside(dir: string): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    execFile('nice', ['-n', '19', 'rm', '-rf', '--', dir], (err) => resolve(err === null));
  });
  if (!ok) await removeTree(dir);
}
