import { chmodSync, chownSync, closeSync, constants as fsc, copyFileSync, lchownSync, linkSync, lutimesSync, mkdirSync, openSync, promises as fsp, renameSync, symlinkSync, utimesSync } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { writeXattrs } from '../../store/xattrs';
import { utimeSeconds, writeIndexFile, type EntryChange, type IndexEntry } from './listing-index';
import { BoundedTasks } from '../../store/bounded-tasks';

/** Files linked, copied or moved at once: enough to keep the thread pool busy, few enough to keep memory flat. */
export const FILE_CONCURRENCY = 32;

/** One entry of the new listing with how it differs from the kept generation. */
export interface PlannedEntry {
  entry: IndexEntry;
  change: EntryChange;
  /** where the received content waits (a FILE whose content was asked for) */
  staged?: string;
  /** sha256 (hex) of the received content, taken as it was written */
  digest?: string;
  /** the staged file was given its owner, mode and times as it was written (it has no extended attributes) */
  metaSet?: boolean;
}

export interface GenerationPlan {
  /** the temp dir the generation is built in: gets `tree/` and `index.jsonl` */
  dir: string;
  /** the listing in order, parents before children (already checked: no duplicates, parents listed dirs) */
  entries: readonly PlannedEntry[];
  /** the tree of the kept generation the `same`/`metadata` files come from */
  keptTree?: string;
  /**
   * directories the receiver made below `dir/tree` ('' for the tree itself, 0700, nothing else
   * set) to write received files in place: a staged path equal to the target is not moved
   */
  madeDirs?: ReadonlySet<string>;
  /** set owners (the daemon is root) */
  chown: boolean;
  signal: AbortSignal;
}

/** What it took, for the log and the tests. */
export interface BuildStats {
  linked: number;
  copied: number;
  written: number;
}

/**
 * Builds a new generation of a kept local in a temp dir from the kept one and the received
 * files: directories made fresh (or as the receiver made them, see madeDirs), unchanged files
 * hardlinked (they share the kept inode, whose metadata is already right), files with changed
 * metadata only copied (an inode of their own: changing a shared one would change the kept
 * generation under a build that uses it), received files moved into place unless received
 * there; then owner, attributes, mode and time as the old receiver set them
 * (owner before attributes, which a chown drops; directory modes and times last, so a 0555
 * directory still receives its children). Everything below `dir` is ours: no path in it can
 * be a symlink the client made, since links are only ever created as leaves.
 *
 * Lifecycle: one call per sync; on failure the caller removes `dir`.
 */
export async function buildGeneration(plan: GenerationPlan): Promise<BuildStats> {
  const tree = path.join(plan.dir, 'tree');
  const made = plan.madeDirs ?? new Set<string>();
  if (!made.has('')) await fsp.mkdir(tree, { mode: 0o700 });
  const stats: BuildStats = { linked: 0, copied: 0, written: 0 };
  const dirs: PlannedEntry[] = [];
  const pace = new Pacer(plan.signal);
  for (const p of plan.entries) {
    if (p.entry.type !== 'DIR') continue;
    await pace.step();
    const target = join(tree, p.entry.path);
    if (!made.has(p.entry.path)) mkdirSync(target, { mode: 0o700 });
    await applyXattrs(target, p.entry);
    dirs.push(p);
  }
  const tasks = new BoundedTasks(FILE_CONCURRENCY);
  try {
    for (const p of plan.entries) {
      if (p.entry.type === 'DIR') continue;
      await pace.step();
      if (!placeInline(p, tree, plan, stats)) await tasks.run(() => placeEntry(p, tree, plan, stats));
    }
  } catch (err) {
    await tasks.settle();
    throw err;
  }
  await tasks.drain();
  for (const p of dirs.reverse()) {
    await pace.step();
    const target = join(tree, p.entry.path);
    if (plan.chown) lchownSync(target, p.entry.uid, p.entry.gid);
    chmodSync(target, p.entry.mode);
    utimesSync(target, utimeSeconds(p.entry.mtime_ms), utimeSeconds(p.entry.mtime_ms));
  }
  await writeIndexFile(path.join(plan.dir, 'index.jsonl'), plan.entries.map((p) => p.entry));
  return stats;
}

/** Entries placed with synchronous calls between two turns of the event loop (a few milliseconds). */
const INLINE_BATCH = 64;
/** Files copied from the kept copy inline up to this size; larger ones on the thread pool. */
const INLINE_COPY_MAX = 256 * 1024;

/**
 * Checks the signal before each entry and gives the event loop a turn every INLINE_BATCH
 * entries, so synchronous placing never holds the daemon for long.
 */
class Pacer {
  private count = 0;

  constructor(private readonly signal: AbortSignal) {}

  async step(): Promise<void> {
    this.signal.throwIfAborted();
    if (++this.count % INLINE_BATCH === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * Places an entry without attributes with synchronous calls (a rename, a link, a small copy,
 * then owner, mode and time): each is microseconds of kernel work, where a thread-pool round
 * trip per call costs several times the CPU. False when it is left for placeEntry (attributes
 * to set, or a large file to copy).
 */
function placeInline(p: PlannedEntry, tree: string, plan: GenerationPlan, stats: BuildStats): boolean {
  const e = p.entry;
  if (Object.keys(e.xattrs).length > 0) return false;
  const target = join(tree, e.path);
  const time = utimeSeconds(e.mtime_ms);
  if (e.type === 'SYMLINK') {
    symlinkSync(e.link_target, target);
    if (plan.chown) lchownSync(target, e.uid, e.gid);
    lutimesSync(target, time, time);
    return true;
  }
  if (p.staged !== undefined) {
    if (p.staged !== target) renameSync(p.staged, target);
    stats.written++;
    if (p.metaSet) return true;
  } else if (p.change === 'content') {
    if (e.size !== 0) throw new BuildError('internal', `Cannot place ${e.path}: its content was never received`);
    closeSync(openSync(target, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600));
  } else {
    if (plan.keptTree === undefined) throw new BuildError('internal', `Cannot place ${e.path}: no kept copy to take it from`);
    const kept = join(plan.keptTree, e.path);
    if (p.change === 'same' && tryLink(kept, target)) {
      stats.linked++;
      return true;
    }
    if (e.size > INLINE_COPY_MAX) return false;
    try {
      copyFileSync(kept, target, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE);
    } catch (err) {
      throw new BuildError('internal', `Cannot copy ${e.path} from the kept copy of its local: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    stats.copied++;
  }
  if (plan.chown) chownSync(target, e.uid, e.gid);
  chmodSync(target, e.mode);
  utimesSync(target, time, time);
  return true;
}

function tryLink(existing: string, target: string): boolean {
  try {
    linkSync(existing, target);
    return true;
  } catch {
    return false;
  }
}

async function placeEntry(p: PlannedEntry, tree: string, plan: GenerationPlan, stats: BuildStats): Promise<void> {
  const e = p.entry;
  const target = join(tree, e.path);
  if (e.type === 'SYMLINK') {
    await fsp.symlink(e.link_target, target);
    if (plan.chown) await fsp.lchown(target, e.uid, e.gid);
    await applyXattrs(target, e);
    await fsp.lutimes(target, utimeSeconds(e.mtime_ms), utimeSeconds(e.mtime_ms));
    return;
  }
  if (p.staged !== undefined) {
    if (p.staged !== target) await fsp.rename(p.staged, target);
    stats.written++;
  } else if (p.change === 'content') {
    // only an empty file is never asked for: its content is known
    if (e.size !== 0) throw new BuildError('internal', `Cannot place ${e.path}: its content was never received`);
    await (await fsp.open(target, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600)).close();
  } else {
    const kept = plan.keptTree === undefined ? undefined : join(plan.keptTree, e.path);
    if (kept === undefined) throw new BuildError('internal', `Cannot place ${e.path}: no kept copy to take it from`);
    if (p.change === 'same' && (await fsp.link(kept, target).then(() => true, () => false))) {
      stats.linked++;
      return;
    }
    // the kept inode keeps the kept metadata: this entry gets its own (reflinked where the file system can)
    await fsp.copyFile(kept, target, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE).catch((err: NodeJS.ErrnoException) => {
      throw new BuildError('internal', `Cannot copy ${e.path} from the kept copy of its local: ${err.code ?? err.message}`);
    });
    stats.copied++;
  }
  if (plan.chown) await fsp.chown(target, e.uid, e.gid);
  // after the chown (it drops security.capability), before the chmod (user.* needs a writable file when not root)
  await applyXattrs(target, e);
  await fsp.chmod(target, e.mode);
  await fsp.utimes(target, utimeSeconds(e.mtime_ms), utimeSeconds(e.mtime_ms));
}

/**
 * As the old receiver: an attribute the file system refuses on a symlink or without user.*
 * support is left out, a refused security.capability fails the build.
 */
export async function applyXattrs(target: string, e: IndexEntry): Promise<void> {
  const names = Object.keys(e.xattrs);
  if (names.length === 0) return;
  const xattrs = new Map(names.sort(compareBytes).map((n) => [n, e.xattrs[n] as Buffer]));
  await writeXattrs(target, xattrs, {
    fail: (name, reason) => new BuildError('invalid-argument', `Cannot receive ${e.path}: its extended attribute ${name} cannot be set: ${reason}`),
  });
}

/** `rel` (`/`-separated, from a listing) below `root`, in the platform's form. */
export function join(root: string, rel: string): string {
  return path.join(root, ...rel.split('/'));
}


function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
