import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino, { type Logger } from 'pino';
import { BuildError } from '../../solver/build-error';
import { resolveInRoot } from '../../store/safe-path';
import { pathExists } from '../../store/path-exists';

/**
 * Removes the stubs a run left behind. Rejects with a BuildError ('internal') naming every
 * stub that is still an empty stub and could not be removed: it would end up in the layer,
 * which must not hold runc's mount points. Stubs the step filled, replaced or removed are
 * left alone. A parent's mtime that cannot be restored is only logged (reproducibility, not
 * content). Call once, after the container is deleted.
 */
export type MountStubsCleaner = () => Promise<void>;

/** Options of `recordMountStubs`. */
export interface MountStubsOptions {
  /** where the cleaner reports what it could not tidy but that does not fail the step; silent when absent */
  logger?: Logger;
}

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
 * (BuildKit only logs a stub it cannot remove; here the step fails, since the layer would
 * differ.)
 */
export async function recordMountStubs(rootfs: string, destinations: readonly string[], opts: MountStubsOptions = {}): Promise<MountStubsCleaner> {
  const log = opts.logger ?? pino({ enabled: false });
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
    const failures: string[] = [];
    for (const rel of stubs) {
      const failure = await removeIfEmpty(root, rel);
      if (failure !== undefined) failures.push(`/${rel} (${failure})`);
    }
    for (const parent of parents.values()) {
      const failure = await restoreTimes(root, parent);
      if (failure !== undefined) {
        log.warn({ rootfs: root, dir: `/${path.relative(root, parent.dir)}`, reason: failure }, 'Cannot restore the times of a mount stub parent: the layer shows it touched');
      }
    }
    if (failures.length > 0) {
      throw new BuildError('internal', `Cannot remove the mount stubs runc created, which would end up in the layer: ${failures.join(', ')}`);
    }
  };
}

/** Removes the stub at `rel` if it is still an empty stub; returns why that failed, if it did. */
async function removeIfEmpty(root: string, rel: string): Promise<string | undefined> {
  const expected = path.join(root, rel);
  let resolved: string;
  try {
    resolved = await resolveInRoot(root, rel, { followFinal: false });
  } catch (err) {
    // a symlink loop the step made on the way: the stub is no longer at this path
    if (err instanceof BuildError) return undefined;
    return reasonOf(err);
  }
  // the step may have replaced a parent by a symlink (to the host's /, say): only touch the
  // path when it still resolves to itself inside the rootfs
  if (resolved !== expected) return undefined;
  try {
    const st = await fsp.lstat(expected);
    if (st.isDirectory()) {
      if ((await fsp.readdir(expected)).length === 0) await fsp.rmdir(expected);
    } else if (st.isFile() && st.size === 0) {
      await fsp.unlink(expected);
    }
    // anything else the step put there is the step's
    return undefined;
  } catch (err) {
    // gone already (the step removed it or its parent): nothing left to land in the layer
    if (isGone(err)) return undefined;
    return reasonOf(err);
  }
}

/** Restores a parent's times when its listing is what it was; returns why that failed, if it did. */
async function restoreTimes(root: string, parent: ParentTimes): Promise<string | undefined> {
  try {
    // the step may have swapped a component for a symlink out of the rootfs: touch only what
    // still resolves to itself inside it
    if ((await resolveInRoot(root, path.relative(root, parent.dir), { followFinal: false })) !== parent.dir) return undefined;
    const now = await listDir(parent.dir);
    if (now.length !== parent.entries.length || now.some((e, i) => e !== parent.entries[i])) return undefined;
    await fsp.lutimes(parent.dir, parent.atime, parent.mtime);
    return undefined;
  } catch (err) {
    return isGone(err) ? undefined : reasonOf(err);
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function reasonOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code !== undefined && e.syscall !== undefined ? `${e.syscall}: ${e.code}` : String(e.message ?? err);
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
