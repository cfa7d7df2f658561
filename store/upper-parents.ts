import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { lstatOrUndefined } from './path-exists';
import { copyXattrs } from './xattrs';

/**
 * The directories a write straight into a snapshot's upper dir goes through, made there as
 * overlayfs would have made them had the write gone through the merged mount. Lifecycle: made
 * by {@link copyUpParents} before the write, `finish()` once after it succeeded.
 */
export interface UpperParents {
  /** Gives each copied-up directory the times overlayfs would leave it with; removes them all when nothing was written below. */
  finish(): Promise<void>;
}

/**
 * Prepares `upper` (the empty upper dir of a snapshot whose lower layers `view` shows merged,
 * undefined for none) for a write below the image path `dest` that touches nothing the lower
 * layers hold: each existing directory on the way to `dest` is copied up (mode, owner,
 * attributes and times of the lower one, as overlayfs' copy-up), and `dest` itself must be
 * missing or an empty directory. Undefined, with nothing made, when that does not hold (a
 * symlink or a file on the way, a `dest` with content): the write must then go through the
 * mount, which merges with what is below.
 *
 * Times: overlayfs copies a directory up with its lower times and restores a parent's times
 * after copying a child up into it, so every directory on the way keeps its lower times except
 * the deepest, in which the write creates entries (its mtime becomes the time of the write).
 */
export async function copyUpParents(view: string | undefined, upper: string, dest: string): Promise<UpperParents | undefined> {
  const parts = dest.split('/').filter((p) => p !== '' && p !== '.');
  // '..' is resolved after symlinks by the copy; lexically here: not the same path in general
  if (parts.includes('..')) return undefined;
  // the root always exists: only an empty base leaves nothing to merge with
  if (parts.length === 0 && view !== undefined && (await fsp.readdir(view)).length > 0) return undefined;
  const existing: Array<{ rel: string; st: Stats }> = [];
  if (view !== undefined) {
    for (let i = 0; i < parts.length; i++) {
      const rel = parts.slice(0, i + 1).join('/');
      const st = await lstatOrUndefined(path.join(view, rel));
      if (st === undefined) break;
      if (!st.isDirectory()) return undefined;
      if (i === parts.length - 1 && (await fsp.readdir(path.join(view, rel))).length > 0) return undefined;
      existing.push({ rel, st });
    }
  }
  for (const { rel, st } of existing) {
    const dir = path.join(upper, rel);
    await fsp.mkdir(dir);
    // owner before attributes and mode, as a copy-up: a chown drops security.capability and setgid
    await fsp.lchown(dir, st.uid, st.gid);
    await copyXattrs(path.join(view as string, rel), dir);
    await fsp.chmod(dir, st.mode & 0o7777);
  }
  return {
    async finish(): Promise<void> {
      const deepest = existing[existing.length - 1];
      if (deepest === undefined) return;
      if ((await fsp.readdir(path.join(upper, deepest.rel))).length === 0) {
        // nothing was written below: overlayfs would have copied nothing up
        for (const { rel } of existing.reverse()) await fsp.rmdir(path.join(upper, rel));
        return;
      }
      for (const { rel, st } of existing.slice(0, -1).reverse()) await fsp.utimes(path.join(upper, rel), st.atime, st.mtime);
    },
  };
}
