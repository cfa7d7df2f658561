import { promises as fsp } from 'node:fs';

/** Whether something (of any type, a dangling symlink too) is at `p`; lstat, never followed. */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw err;
  }
}
