import { promises as fsp, type Stats } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import type { CopyAction, MkdirAction, MkfileAction } from '../solver/op';
import { extractArchive, isArchive } from './archive-extract';
import { FileMode } from './file-mode';
import { selectSources, type SelectedSource } from './copy-selection';
import { makeDir, mkdirAll } from './mkdir-all';
import { resolveChownOwner } from './passwd';
import { resolveInRoot } from './safe-path';
import { TreeCopier, type Owner, type TreeCopierOptions } from './tree-copier';

/** Where a copy may put temporary files. */
export interface CopyOptions {
  /** parent of the scratch layer a `link` copy is built in (default: the OS temp dir) */
  tmpDir?: string;
  /**
   * checked between entries (and archive entries): an aborted copy stops early with the
   * signal's reason, leaving a partial destination for the caller to discard
   */
  signal?: AbortSignal;
  /** files may be hard-linked from the source (see TreeCopierOptions.linkFiles) */
  linkFiles?: boolean;
  /** the source is one overlay upper dir (see TreeCopierOptions.skipWhiteouts) */
  skipWhiteouts?: boolean;
}

/**
 * Runs one COPY onto `destRoot` (a mounted snapshot) from `srcRoot`, with the semantics of
 * BuildKit's Dockerfile COPY (checked against Docker 20.10's BuildKit):
 * - each source is resolved inside `srcRoot`, symlinks followed; a glob matching nothing adds
 *   nothing (BuildKit's AllowEmptyWildcard), a plain path that is missing is not-found;
 * - a directory source copies its contents; a file goes into `dest` when `dest` ends in `/`,
 *   there are several sources or `dest` is an existing directory, else it becomes `dest`;
 * - inside a copied tree, symlinks stay symlinks, hard links stay linked, modes are kept
 *   (`--chmod` octal replaces them, symbolic changes them, on files and directories), owner
 *   is 0:0 or `--chown`, mtimes kept; extended attributes are copied after the owner is set,
 *   so a file capability (security.capability) survives `--chown` as in BuildKit;
 * - directories COPY creates (the destination and its missing parents) are 0755, owned by the
 *   `--chown` user (0:0 without), never `--chmod`ed; existing ones are left as they are;
 * - `exclude` patterns apply inside each matched directory, relative to it (as fsutil's
 *   copier: a matched file itself is never excluded);
 * - `parents`: each source is split at a `/./` marker (else at the root) into a directory and
 *   a pattern; the pattern's matches keep their path below that directory under `dest`;
 * - `extract` (ADD): a regular file that is a tar (plain, gzip, bzip2, xz) is unpacked into
 *   `dest` as a directory, see extractArchive;
 * - `link`: the copy is made onto an empty scratch directory and merged over `destRoot` as a
 *   layer: nothing in the destination (a symlink, a directory in the way) is looked at or
 *   followed, and directories the copy creates replace the metadata of existing ones.
 */
export async function copyAction(action: CopyAction, srcRoot: string, destRootIn: string, opts: CopyOptions = {}): Promise<void> {
  const destRoot = path.resolve(destRootIn);
  const { signal } = opts;
  signal?.throwIfAborted();
  if (action.link) return copyLinked(action, srcRoot, destRoot, opts);
  const owner = await resolveChownOwner(destRoot, action.chown);
  const chmod = action.chmod === undefined ? undefined : FileMode.parse(action.chmod);
  const dest = await resolveInRoot(destRoot, action.dest);
  // The same selection checksumPaths keys the copy with: what is copied is what is keyed.
  const notFound = (pattern: string): BuildError => new BuildError('not-found', `Cannot copy ${JSON.stringify(pattern)}: not found in the source`);
  const sources = await selectSources(srcRoot, action, notFound);
  // what every copier of this action does the same way
  const shared = { owner, chmod, signal, linkFiles: opts.linkFiles, skipWhiteouts: opts.skipWhiteouts, destRoot };
  if (action.parents) {
    for (const source of sources) await copyPivot(source, dest, shared);
    return;
  }
  const destStat = await statOrUndefined(dest);
  const intoDir = action.dest.endsWith('/') || action.srcPaths.length > 1 || destStat?.isDirectory() === true;
  // One copier for the whole action keeps hard links between its sources; every source shares one exclude.
  await TreeCopier.copy({ ...shared, exclude: sources[0]?.filter.exclude }, async (copier) => {
    for (const { path: src, hostPath: srcHost, stat: st } of sources) {
      signal?.throwIfAborted();
      if (st.isDirectory()) {
        await mkdirAll(destRoot, dest, 0o755, owner);
        await copier.copyChildren(srcHost, dest);
      } else if (action.extract && st.isFile() && (await isArchive(srcHost, signal))) {
        await mkdirAll(destRoot, dest, 0o755, owner);
        // Copies in flight may be writing where the archive unpacks: they go first.
        await copier.finish();
        // The reference BuildKit keeps the archive's owners even with --chown (newer ones apply it).
        await extractArchive(srcHost, dest, null, signal);
      } else {
        const target = intoDir ? path.join(dest, path.posix.basename(src)) : dest;
        await mkdirAll(destRoot, path.dirname(target), 0o755, owner);
        await copier.copyEntry(srcHost, target, st);
      }
    }
  });
}

/** COPY --parents for one pivot: BuildKit copies the pivot directory with an include pattern. */
async function copyPivot(source: SelectedSource, dest: string, shared: TreeCopierOptions & { owner: Owner; destRoot: string }): Promise<void> {
  await mkdirAll(shared.destRoot, dest, 0o755, shared.owner);
  if (source.stat.isDirectory()) await TreeCopier.copy({ ...shared, ...source.filter }, (c) => c.copyChildren(source.hostPath, dest));
  else await TreeCopier.copy({ ...shared, exclude: source.filter.exclude }, (c) => c.copyEntry(source.hostPath, path.join(dest, path.posix.basename(source.path)), source.stat));
}

/** COPY --link: copy onto scratch, then merge that layer over the destination. */
async function copyLinked(action: CopyAction, srcRoot: string, destRoot: string, opts: CopyOptions): Promise<void> {
  const scratch = await fsp.mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'copy-link-'));
  try {
    await copyAction({ ...action, link: false }, srcRoot, scratch, { signal: opts.signal });
    await TreeCopier.copy({ owner: null, replaceConflicts: true, signal: opts.signal, destRoot }, (c) => c.copyChildren(scratch, destRoot));
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Runs one mkdir (WORKDIR, or an explicit file op) in `destRoot`. With `makeParents`, every
 * directory created gets `mode` and the owner, as BuildKit's MkdirAll; an existing directory
 * is left alone either way.
 */
export async function mkdirAction(action: MkdirAction, destRootIn: string): Promise<void> {
  const destRoot = path.resolve(destRootIn);
  const owner = await resolveChownOwner(destRoot, action.chown);
  const target = await resolveInRoot(destRoot, action.path);
  if (action.makeParents) return mkdirAll(destRoot, target, action.mode, owner);
  const parent = await statOrUndefined(path.dirname(target));
  if (!parent?.isDirectory()) throw new BuildError('not-found', `Cannot create directory ${action.path}: its parent does not exist`);
  await makeDir(target, action.mode, owner);
}

/**
 * Runs one mkfile (a COPY heredoc is written with it onto scratch, then copied): writes
 * `data` (UTF-8) at `path` resolved inside `destRoot`, as BuildKit's os.WriteFile under the
 * daemon's umask 022: a new file gets `mode & 0755`-style bits, an existing one is truncated
 * and keeps its mode; owner 0:0 or `chown`. The parent directory must exist.
 */
export async function mkfileAction(action: MkfileAction, destRootIn: string): Promise<void> {
  const destRoot = path.resolve(destRootIn);
  const owner = await resolveChownOwner(destRoot, action.chown);
  const target = await resolveInRoot(destRoot, action.path);
  const parent = await statOrUndefined(path.dirname(target));
  if (!parent?.isDirectory()) throw new BuildError('not-found', `Cannot write file ${action.path}: its parent does not exist`);
  const existing = await fsp.lstat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new BuildError('failed-precondition', `Cannot write file ${action.path}: it is a directory`);
  await fsp.writeFile(target, action.data, { encoding: 'utf8' });
  if (!existing) await fsp.chmod(target, action.mode & 0o777 & ~0o022);
  await fsp.lchown(target, owner.uid, owner.gid);
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}
