import { lstatSync, promises as fsp, Stats } from 'node:fs';

/** lstat of `p` (never followed), or undefined when nothing is there. */
export async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.lstat(p).catch((err: unknown) => {
    if (isMissingPath(err)) return undefined;
    throw err;
  });
}

/** {@link lstatOrUndefined}, synchronous: one metadata call where a thread-pool round trip costs more. */
export function lstatOrUndefinedSync(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (err) {
    if (isMissingPath(err)) return undefined;
    throw err;
  }
}

/** Whether a path call failed because nothing is there: ENOENT, or ENOTDIR (a file where a parent directory would be). */
export function isMissingPath(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Whether something (of any type, a dangling symlink too) is at `p`; lstat, never followed. */
export async function pathExists(p: string): Promise<boolean> {
  return (await lstatOrUndefined(p)) !== undefined;
}
