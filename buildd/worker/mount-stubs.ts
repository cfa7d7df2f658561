import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { resolveInRoot } from '../../store/safe-path';
import { pathExists } from '../../store/path-exists';

/** Removes the stubs a run left behind; never throws (a stub left over is not worth failing a build). */
export type MountStubsCleaner = () => Promise<void>;

interface ParentTimes {
  dir: string;
  atime: Date;
  mtime: Date;
  entries: string[];
}

/**
 * Like BuildKit's executor/stubs.go: runc creates every mount destination (/proc, /dev,
 * /etc/hosts ...) and its missing parents in the rootfs, and those empty stubs would end up
 * in the layer. Call before the run with the spec's mount destinations: it records which of
 * them (and of their parents) do not exist yet. The returned cleaner removes the ones still
 * empty afterwards, deepest first, and restores the mtime of the directory that got them when
 * its listing is back to what it was, so the layer doesn't show a touched /etc or /.
 */
export async function recordMountStubs(rootfs: string, destinations: readonly string[]): Promise<MountStubsCleaner> {
  const root = path.resolve(rootfs);
  const missing = new Set<string>();
  const parents = new Map<string, ParentTimes>();
  for (const dest of destinations) {
    // resolved inside the rootfs, as runc does (securejoin): a stub is created where a symlink leads
    let p = await resolveInRoot(root, dest);
    let stubbed = false;
    while (p !== root && !(await pathExists(p))) {
      missing.add(path.relative(root, p));
      stubbed = true;
      p = path.dirname(p);
    }
    if (stubbed && !parents.has(p) && (await isDir(p))) {
      const st = await fsp.stat(p);
      parents.set(p, { dir: p, atime: st.atime, mtime: st.mtime, entries: await listDir(p) });
    }
  }
  const stubs = [...missing].sort((a, b) => depth(b) - depth(a));
  return async () => {
    for (const rel of stubs) await removeIfEmpty(root, rel);
    for (const parent of parents.values()) await restoreTimes(parent);
  };
}

async function removeIfEmpty(root: string, rel: string): Promise<void> {
  const expected = path.join(root, rel);
  try {
    // the step may have replaced a parent by a symlink (to the host's /, say): only touch the
    // path when it still resolves to itself inside the rootfs
    if ((await resolveInRoot(root, rel, { followFinal: false })) !== expected) return;
    const st = await fsp.lstat(expected);
    if (st.isDirectory()) {
      if ((await fsp.readdir(expected)).length === 0) await fsp.rmdir(expected);
    } else if (st.isFile() && st.size === 0) {
      await fsp.unlink(expected);
    }
  } catch {
    // gone already, or not ours to remove: the stub stays, which is harmless
  }
}

async function restoreTimes(parent: ParentTimes): Promise<void> {
  try {
    const now = await listDir(parent.dir);
    if (now.length !== parent.entries.length || now.some((e, i) => e !== parent.entries[i])) return;
    await fsp.utimes(parent.dir, parent.atime, parent.mtime);
  } catch {
    // times are cosmetic (reproducibility); never fail a build for them
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fsp.lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function listDir(p: string): Promise<string[]> {
  return (await fsp.readdir(p)).sort();
}

function depth(rel: string): number {
  return rel.split(path.sep).length;
}
