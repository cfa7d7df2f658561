import { lstatSync, promises as fsp, readdirSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import type { BuildError } from '../solver/build-error';
import { expandGlob, hasGlobMeta } from './path-glob';
import { PathPatterns } from './path-pattern';
import { cleanAbsolute, resolveInRoot } from './safe-path';

/** The COPY flags that decide which source entries a copy takes (a CopyAction's fields). */
export interface CopySelectionSpec {
  srcPaths: string[];
  /** --parents: each source is a pivot directory and an include pattern below it */
  parents?: boolean;
  /** --exclude: applied below each matched directory, relative to it */
  exclude?: string[];
}

/** Which entries below a selected directory are taken; patterns see paths relative to it. */
export interface EntryFilter {
  /** only entries matching these, plus the directories passed on the way to them */
  include?: PathPatterns;
  /** entries matching these are left out (a `!` pattern may re-include below them) */
  exclude?: PathPatterns;
}

/** One match of one source pattern. */
export interface SelectedSource {
  /** the source as written in the COPY */
  pattern: string;
  /** the match, clean absolute (`/a/b`) inside the source root */
  path: string;
  /** the match on the host: resolved inside the source root, symlinks followed */
  hostPath: string;
  /** stat of the followed match: COPY takes what a selected symlink points at */
  stat: Stats;
  /**
   * --parents only: the include pattern below the pivot `path`. A pivot directory's
   * entries land at their `rel` (see walkSelected) under the destination itself, so `rel`
   * is the entry's path relative to the destination.
   */
  parentsInclude?: string;
  /** what to take below the match when it is a directory */
  filter: EntryFilter;
}

/** One entry below a selected directory that the copy writes. */
export interface SelectedEntry {
  hostPath: string;
  /** path below the selected directory, `/`-separated, never empty */
  rel: string;
  /** lstat: entries below a match are never followed */
  stat: Stats;
  /**
   * true for a directory that is not itself selected but holds a selected entry: the copy
   * creates it (source mode, owner) without what else it holds. It is yielded just before
   * the first selected entry below it, never when nothing below it is selected.
   */
  passThrough: boolean;
}

/**
 * The sources one COPY takes from `srcRoot`, in the order it copies them: every match of
 * every pattern (a glob matching nothing adds nothing, as BuildKit's AllowEmptyWildcard; a
 * plain path, or with --parents a plain pivot, that is missing once followed is the error
 * `notFound` makes). COPY (copyAction) and its cache key (checksumPaths) both select through
 * this function and walkSelected, so the key covers exactly what is copied.
 * Reads only; nothing is held once it returns.
 */
export async function selectSources(srcRoot: string, spec: CopySelectionSpec, notFound: (pattern: string) => BuildError): Promise<SelectedSource[]> {
  const exclude = spec.exclude && spec.exclude.length > 0 ? new PathPatterns(spec.exclude) : undefined;
  const selected: SelectedSource[] = [];
  for (const pattern of spec.srcPaths) {
    let base = pattern;
    let parentsInclude: string | undefined;
    let include: PathPatterns | undefined;
    if (spec.parents) {
      // BuildKit splits at a `/./` marker, else at the root: the pivot keeps nothing of its path.
      const cut = pattern.indexOf('/./');
      base = cut >= 0 ? pattern.slice(0, cut) || '/' : '/';
      parentsInclude = cleanAbsolute(cut >= 0 ? pattern.slice(cut + 3) : pattern).slice(1);
      include = new PathPatterns([parentsInclude]);
      if (!hasGlobMeta(base) && !hasGlobMeta(parentsInclude) && !(await statFollowed(srcRoot, path.posix.join(base, parentsInclude)))) {
        throw notFound(pattern);
      }
    }
    const matches = (await expandGlob(srcRoot, base)).map(cleanAbsolute);
    // A plain path must exist, and exist once followed (a symlink to a missing file is missing too).
    if (!hasGlobMeta(base) && (matches.length === 0 || !(await statFollowed(srcRoot, matches[0])))) throw notFound(pattern);
    for (const match of matches) {
      const hostPath = await resolveInRoot(srcRoot, match);
      selected.push({ pattern, path: match, hostPath, stat: await fsp.stat(hostPath), parentsInclude, filter: { include, exclude } });
    }
  }
  return selected;
}

/**
 * Walks what a copy of the directory `hostDir` takes, in pre-order with names sorted, as
 * tonistiigi/fsutil's copier filters: an excluded file is skipped, an excluded directory is
 * skipped whole unless a `!` pattern may re-include something below it, a directory that is
 * not itself included is yielded (passThrough) only once something below it is. Below a
 * yielded non-passThrough directory everything follows the same filter. Symlinks are never
 * followed. The directory must not change during the walk; abort with `signal`.
 */
export async function* walkSelected(hostDir: string, filter: EntryFilter, signal?: AbortSignal): AsyncGenerator<SelectedEntry> {
  yield* walkDir(hostDir, '', filter, [], signal);
}

interface Pending {
  entry: SelectedEntry;
  yielded: boolean;
}

async function* walkDir(dir: string, rel: string, filter: EntryFilter, pending: Pending[], signal?: AbortSignal): AsyncGenerator<SelectedEntry> {
  const { include, exclude } = filter;
  const mayReinclude = exclude?.hasExclusions === true;
  // Synchronous calls: an lstat of a cached inode is a few microseconds of kernel work, where
  // a thread-pool round trip per entry cost several times that on this thread (20,000 files:
  // see the commit). The event loop gets a turn every TURN entries.
  const names = readdirSync(dir).sort();
  for (const name of names) {
    signal?.throwIfAborted();
    if (++turns.count >= TURN) {
      turns.count = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const entryRel = rel ? `${rel}/${name}` : name;
    const excluded = exclude?.matches(entryRel) === true;
    const included = !excluded && (include === undefined || include.matches(entryRel));
    // Skipped before the lstat: nothing below an excluded entry can come back.
    if (excluded && include === undefined && !mayReinclude) continue;
    const hostPath = path.join(dir, name);
    yield* walkEntry({ hostPath, entryRel, excluded, included }, lstatSync(hostPath), filter, pending, signal);
  }
}

/** Entries walked between two turns of the event loop (shared by every walk: a few milliseconds of work). */
const TURN = 128;
const turns = { count: 0 };

interface WalkCandidate {
  hostPath: string;
  entryRel: string;
  excluded: boolean;
  included: boolean;
}

async function* walkEntry(candidate: WalkCandidate, stat: Stats, filter: EntryFilter, pending: Pending[], signal?: AbortSignal): AsyncGenerator<SelectedEntry> {
  const { hostPath, entryRel, excluded, included } = candidate;
  const mayReinclude = filter.exclude?.hasExclusions === true;
  if (included) {
    // Parents first: they are created only on the way to something selected.
    for (const p of pending) {
      if (p.yielded) continue;
      p.yielded = true;
      yield p.entry;
    }
    yield { hostPath, rel: entryRel, stat, passThrough: false };
    if (stat.isDirectory()) yield* walkDir(hostPath, entryRel, filter, pending, signal);
    return;
  }
  if (!stat.isDirectory() || (excluded && !mayReinclude)) return;
  pending.push({ entry: { hostPath, rel: entryRel, stat, passThrough: true }, yielded: false });
  try {
    yield* walkDir(hostPath, entryRel, filter, pending, signal);
  } finally {
    pending.pop();
  }
}

async function statFollowed(root: string, p: string): Promise<Stats | undefined> {
  return fsp.stat(await resolveInRoot(root, p)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}
