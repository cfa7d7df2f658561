import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { writeXattrs } from '../../store/xattrs';
import { indexLine, type EntryChange, type IndexEntry } from './listing-index';
import { runBounded } from './run-bounded';

/** Files linked, copied or moved at once: enough to keep the thread pool busy, few enough to keep memory flat. */
export const FILE_CONCURRENCY = 32;

/** One entry of the new listing with how it differs from the kept generation. */
export interface PlannedEntry {
  entry: IndexEntry;
  change: EntryChange;
  /** where the received content waits (a FILE whose content was asked for) */
  staged?: string;
}

export interface GenerationPlan {
  /** the temp dir the generation is built in: gets `tree/` and `index.jsonl` */
  dir: string;
  /** the listing in order, parents before children (already checked: no duplicates, parents listed dirs) */
  entries: readonly PlannedEntry[];
  /** the tree of the kept generation the `same`/`metadata` files come from */
  keptTree?: string;
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
 * files: directories made fresh, unchanged files hardlinked (they share the kept inode, whose
 * metadata is already right), files with changed metadata only copied (an inode of their own:
 * changing a shared one would change the kept generation under a build that uses it), received
 * files moved into place; then owner, attributes, mode and time as the old receiver set them
 * (owner before attributes, which a chown drops; directory modes and times last, so a 0555
 * directory still receives its children). Everything below `dir` is ours: no path in it can
 * be a symlink the client made, since links are only ever created as leaves.
 *
 * Lifecycle: one call per sync; on failure the caller removes `dir`.
 */
export async function buildGeneration(plan: GenerationPlan): Promise<BuildStats> {
  const tree = path.join(plan.dir, 'tree');
  await fsp.mkdir(tree, { mode: 0o700 });
  const stats: BuildStats = { linked: 0, copied: 0, written: 0 };
  const dirs: PlannedEntry[] = [];
  for (const p of plan.entries) {
    if (p.entry.type !== 'DIR') continue;
    plan.signal.throwIfAborted();
    const target = join(tree, p.entry.path);
    await fsp.mkdir(target, { mode: 0o700 });
    await applyXattrs(target, p.entry);
    dirs.push(p);
  }
  await runBounded(
    plan.entries.filter((p) => p.entry.type !== 'DIR'),
    FILE_CONCURRENCY,
    plan.signal,
    (p) => placeEntry(p, tree, plan, stats),
  );
  await runBounded(dirs.reverse(), FILE_CONCURRENCY, plan.signal, async (p) => {
    const target = join(tree, p.entry.path);
    if (plan.chown) await fsp.lchown(target, p.entry.uid, p.entry.gid);
    await fsp.chmod(target, p.entry.mode);
    await fsp.utimes(target, seconds(p.entry.mtime_ms), seconds(p.entry.mtime_ms));
  });
  await writeIndex(path.join(plan.dir, 'index.jsonl'), plan.entries);
  return stats;
}

async function placeEntry(p: PlannedEntry, tree: string, plan: GenerationPlan, stats: BuildStats): Promise<void> {
  const e = p.entry;
  const target = join(tree, e.path);
  if (e.type === 'SYMLINK') {
    await fsp.symlink(e.link_target, target);
    if (plan.chown) await fsp.lchown(target, e.uid, e.gid);
    await applyXattrs(target, e);
    await fsp.lutimes(target, seconds(e.mtime_ms), seconds(e.mtime_ms));
    return;
  }
  if (p.staged !== undefined) {
    await fsp.rename(p.staged, target);
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
  await fsp.utimes(target, seconds(e.mtime_ms), seconds(e.mtime_ms));
}

/** Written and synced before the generation is published, so a published index is whole. */
async function writeIndex(file: string, entries: readonly PlannedEntry[]): Promise<void> {
  const fh = await fsp.open(file, 'wx', 0o600);
  try {
    let batch: string[] = [];
    for (const p of entries) {
      batch.push(indexLine(p.entry));
      if (batch.length >= 1024) {
        await fh.write(batch.join('\n') + '\n');
        batch = [];
      }
    }
    if (batch.length > 0) await fh.write(batch.join('\n') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * As the old receiver: an attribute the file system refuses on a symlink or without user.*
 * support is left out, a refused security.capability fails the build.
 */
async function applyXattrs(target: string, e: IndexEntry): Promise<void> {
  const names = Object.keys(e.xattrs);
  if (names.length === 0) return;
  const xattrs = new Map(names.sort(compareBytes).map((n) => [n, e.xattrs[n] as Buffer]));
  await writeXattrs(target, xattrs, {
    fail: (name, reason) => new BuildError('invalid-argument', `Cannot receive ${e.path}: its extended attribute ${name} cannot be set: ${reason}`),
  });
}

function join(root: string, rel: string): string {
  return path.join(root, ...rel.split('/'));
}

/** utimes takes seconds as a double: half a microsecond more lands on the intended millisecond. */
function seconds(ms: number): number {
  return ms / 1000 + 5e-7;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
