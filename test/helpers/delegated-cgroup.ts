import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** One mounted cgroup v1 hierarchy's directory, from /proc/self/mountinfo. */
async function v1HierarchyDirs(): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const dirs = new Set<string>();
  for (const line of text.split('\n')) {
    const [before, after] = line.split(' - ');
    if (after === undefined || after.split(' ')[0] !== 'cgroup') continue;
    // runc's view: /sys/fs/cgroup/<mount point's name>
    dirs.add(path.join('/sys/fs/cgroup', path.basename(before?.split(' ')[4] ?? '')));
  }
  return [...dirs].sort();
}

/**
 * A cgroup v1 parent given to a user, as an operator does for rootless buildd (README): the
 * cgroup `parent` made in `hierarchies` (default: every mounted v1 hierarchy) and chowned to
 * `uid`. Lifecycle: made by `delegateV1Cgroup` (as root); `remove` removes, deepest first,
 * whatever cgroups are under it and the parent itself, and resolves with the cgroups it found
 * below the parent (a test's "nothing left" check).
 */
export interface DelegatedCgroup {
  parent: string;
  /** the parent's directory in each hierarchy */
  dirs: string[];
  /** the cgroup directories below the parent now, relative to the cgroup root */
  children(): Promise<string[]>;
  remove(): Promise<string[]>;
}

export async function delegateV1Cgroup(uid: number, gid: number, parent: string, hierarchies?: string[]): Promise<DelegatedCgroup> {
  const all = await v1HierarchyDirs();
  const dirs = all.filter((d) => hierarchies === undefined || hierarchies.includes(path.basename(d))).map((d) => path.join(d, parent));
  const children = async (): Promise<string[]> => {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (!e.isDirectory()) continue;
        out.push(path.relative('/sys/fs/cgroup', path.join(dir, e.name)));
        await walk(path.join(dir, e.name));
      }
    };
    for (const d of dirs) await walk(d);
    return out.sort();
  };
  const remove = async (): Promise<string[]> => {
    const found = await children();
    // deepest first: a cgroup goes only once it has no children
    for (const c of [...found].sort((a, b) => b.length - a.length)) await fsp.rmdir(path.join('/sys/fs/cgroup', c)).catch(() => undefined);
    for (const d of dirs) await fsp.rmdir(d).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    return found;
  };
  try {
    for (const d of dirs) {
      await fsp.mkdir(d);
      // a new cgroup's control files are the creator's: give them all to the user, as chown -R
      for (const f of ['', ...(await fsp.readdir(d))]) await fsp.chown(path.join(d, f), uid, gid);
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return { parent, dirs, children, remove };
}
