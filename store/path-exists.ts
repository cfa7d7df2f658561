import { lstatSync, promises as fsp, Stats } from 'node:fs';

/** lstat of `p` (never followed), or undefined when nothing is there. */
export async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.lstat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}

/** {@link lstatOrUndefined}, synchronous: one metadata call where a thread-pool round trip costs more. */
export function lstatOrUndefinedSync(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** Whether something (of any type, a dangling symlink too) is at `p`; lstat, never followed. */
export async function pathExists(p: string): Promise<boolean> {
  return (await lstatOrUndefined(p)) !== undefined;
}
