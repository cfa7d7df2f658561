import { execFile } from 'node:child_process';
import { promises as fsp, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { setAttribute } from '@napi-rs/xattr';
import { BuildError } from '../solver/build-error';
import { cloneEntry } from './tree-clone';
import { readXattrs, writeXattrs } from './xattrs';

const execFileP = promisify(execFile);

/**
 * What a path was right after a copying snapshotter laid its parent's tree down: which object
 * (inode and birth time: an inode number freed by `rm -rf` and given to a new `mkdir` has a
 * new birth time) and its ctime, which every change of data, owner, mode, attributes, times
 * or links moves and no process can set back.
 */
export interface Baseline {
  object: string;
  ctime: bigint;
}

/** Paths (relative, `/`-separated, the root as '') of a freshly copied tree → their baseline. */
export type Baselines = Map<string, Baseline>;

function objectOf(st: BigIntStats): string {
  return `${st.ino}:${st.birthtimeNs}`;
}

/**
 * Records the baseline of every path under `root`: taken once the copy is complete (its own
 * metadata writes moved the ctimes), kept in memory for as long as the snapshot is active.
 */
export async function recordBaselines(root: string, signal?: AbortSignal): Promise<Baselines> {
  const out: Baselines = new Map();
  async function walk(rel: string): Promise<void> {
    for (const name of await fsp.readdir(path.join(root, rel))) {
      signal?.throwIfAborted();
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await fsp.lstat(path.join(root, r), { bigint: true });
      out.set(r, { object: objectOf(st), ctime: st.ctimeNs });
      if (st.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return out;
}

/** Inputs of {@link writeLayerDiff}. */
export interface LayerDiffInput {
  /** the parent's full tree (immutable) */
  lower: string;
  /** the child's full tree, copied from `lower` and then changed */
  upper: string;
  /** what `upper` was right after the copy (recordBaselines) */
  baselines: Baselines;
  /** an empty directory that receives the changes */
  out: string;
  /** `trusted.overlay.opaque` or `user.overlay.opaque` */
  opaqueXattr: string;
  signal?: AbortSignal;
}

/**
 * Writes what changed from `lower` to `upper` into `out` in overlayfs' upper-dir format, the
 * one layer-diff reads: a new or changed entry is copied whole (a directory with everything
 * in it), a deleted one becomes a whiteout (a 0:0 character device), a directory that was
 * removed and made again is copied whole and marked opaque, so nothing of `lower` below it
 * shows through; the directories on the way to a change are there with their own metadata.
 *
 * Changes are found by a walk of both trees, as containerd's double-walk diff, but without its
 * guess on content: a path is unchanged exactly when it is still the object the copy made and
 * its ctime has not moved since (see Baseline). Hard links among copied entries stay links.
 */
export async function writeLayerDiff(input: LayerDiffInput): Promise<void> {
  const { lower, upper, baselines, out, opaqueXattr, signal } = input;
  const made = new Set<string>(['']);
  const dirTimes: Array<[string, BigIntStats]> = [];
  const links = new Map<string, Promise<string>>();
  // a marker in the tree (a layer's SCHILY.xattr.user.overlay.opaque, say) is data, never ours
  const markerNs = opaqueXattr.slice(0, opaqueXattr.length - 'opaque'.length);
  const skipXattr = (name: string): boolean => name.startsWith(markerNs);
  const clone = { signal, links, skipXattr };

  /** Makes `out/rel` and the directories above it, each with its metadata in `upper`. */
  async function ensureDir(rel: string): Promise<void> {
    if (made.has(rel)) return;
    await ensureDir(rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
    const src = path.join(upper, rel);
    const dest = path.join(out, rel);
    const st = await fsp.lstat(src, { bigint: true });
    await fsp.mkdir(dest);
    await fsp.lchown(dest, Number(st.uid), Number(st.gid));
    const xattrs = await readXattrs(src, (n) => !skipXattr(n));
    if (xattrs.size > 0) await writeXattrs(dest, xattrs);
    await fsp.chmod(dest, Number(st.mode & 0o7777n));
    made.add(rel);
    dirTimes.push([dest, st]);
  }

  async function whiteout(rel: string): Promise<void> {
    const dest = path.join(out, rel);
    try {
      // mode 0, as overlay makes them
      await execFileP('mknod', ['-m', '0', dest, 'c', '0', '0']);
    } catch (err) {
      const stderr = ((err as { stderr?: string }).stderr ?? String(err)).trim();
      throw new BuildError(
        'failed-precondition',
        `Cannot record the deletion of /${rel} in the layer: creating its whiteout (a 0:0 character device) was refused (${stderr}); the native snapshotter needs mknod of whiteouts under buildd's root (Linux 5.8 or later in a user namespace; not on overlayfs)`,
        { cause: err },
      );
    }
  }

  async function walkDir(rel: string): Promise<void> {
    const upperNames = (await fsp.readdir(path.join(upper, rel))).sort();
    const inUpper = new Set(upperNames);
    const lowerNames = new Set(await fsp.readdir(path.join(lower, rel)));
    for (const name of [...lowerNames].sort()) {
      if (inUpper.has(name)) continue;
      signal?.throwIfAborted();
      await ensureDir(rel);
      await whiteout(join(rel, name));
    }
    for (const name of upperNames) {
      signal?.throwIfAborted();
      const r = join(rel, name);
      const st = await fsp.lstat(path.join(upper, r), { bigint: true });
      const base = baselines.get(r);
      if (base !== undefined && base.object === objectOf(st)) {
        // the very entry the copy made: changed only if its ctime moved
        if (st.isDirectory()) {
          if (st.ctimeNs !== base.ctime) await ensureDir(r);
          await walkDir(r);
        } else if (st.ctimeNs !== base.ctime) {
          await ensureDir(rel);
          await cloneEntry(path.join(upper, r), path.join(out, r), clone);
        }
        continue;
      }
      // new, or removed and made again (perhaps of another type): copied whole
      await ensureDir(rel);
      await cloneEntry(path.join(upper, r), path.join(out, r), clone);
      if (st.isDirectory() && lowerNames.has(name)) {
        // what the old entry held must not show through the new directory (overlay marks it so too)
        await setAttribute(path.join(out, r), opaqueXattr, Buffer.from('y'));
      }
    }
  }

  await walkDir('');
  // children change their parent's mtime: directories' times last, deepest first
  for (const [dir, st] of dirTimes.reverse()) await fsp.utimes(dir, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9);
}

function join(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}
