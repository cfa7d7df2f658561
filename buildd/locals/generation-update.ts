import { chmodSync, closeSync, constants as fsc, lchownSync, lutimesSync, mkdirSync, openSync, promises as fsp, renameSync, symlinkSync, utimesSync } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { applyXattrs, join, type BuildStats, type PlannedEntry } from './generation-builder';
import { utimeSeconds, writeIndexFile, type IndexEntry } from './listing-index';

/** What {@link updateGeneration} works on. */
export interface UpdatePlan {
  /** the generation's temp dir: holds `tree/` (the received files, see madeDirs) and gets `index.jsonl` */
  dir: string;
  /** the kept generation's tree, taken out of the store (LocalsStore.claim) and below `dir`: updated into the new tree */
  claimedTree: string;
  /** the listing the claimed tree was built from */
  keptIndex: ReadonlyMap<string, IndexEntry>;
  /** the new listing in order, parents before children */
  entries: readonly PlannedEntry[];
  signal: AbortSignal;
}

/**
 * Whether the kept tree can be updated in place into the one `entries` list: the daemon is
 * root (a client's 0555 directory does not stop it changing what is inside) and no directory
 * that stays keeps an extended attribute the new listing drops (only files are replaced whole).
 */
export function canUpdateInPlace(entries: readonly PlannedEntry[], keptIndex: ReadonlyMap<string, IndexEntry>, root: boolean): boolean {
  if (!root) return false;
  for (const p of entries) {
    if (p.entry.type !== 'DIR' || p.change === 'same') continue;
    const old = keptIndex.get(p.entry.path);
    if (old?.type === 'DIR' && Object.keys(old.xattrs).some((n) => !Object.hasOwn(p.entry.xattrs, n))) return false;
  }
  return true;
}

/**
 * Makes the next generation of a kept local from the previous one's own tree instead of a new
 * tree of 20,000 hardlinks (the previous generation is the store's no longer: see
 * LocalsStore.claim): paths the new listing drops or lists with another type are removed, new
 * directories made, and each file or symlink that changed is replaced whole by a rename (a
 * received file; a copy for a metadata change; a new symlink), never changed in place: a layer
 * that hardlinked the old inode keeps it as it was. Unchanged files keep their inodes, so the
 * file digest cache still knows them. Directories whose listing or contents changed get their
 * owner, mode and time again, last. Then the claimed tree becomes `<dir>/tree` and the index is
 * written, as buildGeneration leaves it.
 *
 * Lifecycle: one call per sync, under the key's lock; on failure the caller removes `dir`,
 * claimed tree and all, and the key has no kept copy until the next sync publishes one.
 */
export async function updateGeneration(plan: UpdatePlan): Promise<BuildStats> {
  const tree = plan.claimedTree;
  const next = new Map(plan.entries.map((p) => [p.entry.path, p]));
  const touched = new Set<string>();
  const stats: BuildStats = { linked: 0, copied: 0, written: 0 };
  let turn = 0;
  const pace = async (): Promise<void> => {
    plan.signal.throwIfAborted();
    if (++turn % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  };
  // 1. what goes: dropped paths and paths whose type changes (a removed dir takes its children)
  const removedDirs = new Set<string>();
  for (const [p, old] of plan.keptIndex) {
    const now = next.get(p);
    if (now !== undefined && now.entry.type === old.type) continue;
    if (underAny(p, removedDirs)) continue;
    await pace();
    await fsp.rm(join(tree, p), { recursive: true, force: true });
    touched.add(parentOf(p));
    if (old.type === 'DIR') removedDirs.add(p);
  }
  // 2. directories the kept tree does not have
  for (const p of plan.entries) {
    if (p.entry.type !== 'DIR' || plan.keptIndex.get(p.entry.path)?.type === 'DIR') continue;
    await pace();
    mkdirSync(join(tree, p.entry.path), { mode: 0o700 });
    await applyXattrs(join(tree, p.entry.path), p.entry);
    touched.add(p.entry.path);
    touched.add(parentOf(p.entry.path));
  }
  // 3. files and symlinks that changed, each made aside (a received file: where it was received) and renamed over its path
  const swap = path.join(plan.dir, 'swap');
  mkdirSync(swap, { mode: 0o700 });
  let n = 0;
  for (const p of plan.entries) {
    const e = p.entry;
    if (e.type === 'DIR') continue;
    if (p.change === 'same') {
      stats.linked++;
      continue;
    }
    await pace();
    const target = join(tree, e.path);
    const aside = p.staged ?? path.join(swap, String(n++));
    if (e.type === 'SYMLINK') {
      symlinkSync(e.link_target, aside);
      lchownSync(aside, e.uid, e.gid);
      await applyXattrs(aside, e);
      lutimesSync(aside, utimeSeconds(e.mtime_ms), utimeSeconds(e.mtime_ms));
    } else {
      if (p.staged !== undefined) {
        stats.written++;
        if (p.metaSet) {
          renameSync(aside, target);
          touched.add(parentOf(e.path));
          continue;
        }
      } else if (p.change === 'content') {
        if (e.size !== 0) throw new BuildError('internal', `Cannot place ${e.path}: its content was never received`);
        closeSync(openSync(aside, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600));
      } else {
        // same content, other metadata: an inode of its own (reflinked where the file system can)
        await fsp.copyFile(target, aside, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE).catch((err: NodeJS.ErrnoException) => {
          throw new BuildError('internal', `Cannot copy ${e.path} from the kept copy of its local: ${err.code ?? err.message}`);
        });
        stats.copied++;
      }
      lchownSync(aside, e.uid, e.gid);
      // after the chown (it drops security.capability), before the chmod
      await applyXattrs(aside, e);
      chmodSync(aside, e.mode);
      utimesSync(aside, utimeSeconds(e.mtime_ms), utimeSeconds(e.mtime_ms));
    }
    renameSync(aside, target);
    touched.add(parentOf(e.path));
  }
  // 4. directories: owner, mode and time of the changed ones and of those whose entries changed, deepest first
  for (const p of plan.entries) if (p.entry.type === 'DIR' && p.change !== 'same') touched.add(p.entry.path);
  for (let i = plan.entries.length - 1; i >= 0; i--) {
    const e = (plan.entries[i] as PlannedEntry).entry;
    if (e.type !== 'DIR' || !touched.has(e.path)) continue;
    await pace();
    const target = join(tree, e.path);
    lchownSync(target, e.uid, e.gid);
    chmodSync(target, e.mode);
    utimesSync(target, utimeSeconds(e.mtime_ms), utimeSeconds(e.mtime_ms));
  }
  // the received files' directories are empty now; the updated tree takes their place
  await fsp.rm(path.join(plan.dir, 'tree'), { recursive: true, force: true });
  await fsp.rm(swap, { recursive: true, force: true });
  await fsp.rename(tree, path.join(plan.dir, 'tree'));
  await writeIndexFile(path.join(plan.dir, 'index.jsonl'), plan.entries.map((p) => p.entry));
  return stats;
}

/** Whether a parent of `p` is in `dirs`. */
function underAny(p: string, dirs: ReadonlySet<string>): boolean {
  if (dirs.size === 0) return false;
  for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) if (dirs.has(p.slice(0, i))) return true;
  return false;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}
