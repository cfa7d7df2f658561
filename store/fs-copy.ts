import { promises as fsp, type Stats } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import type { Chown, CopyAction, MkdirAction, MkfileAction } from '../solver/op';
import { extractArchive, isArchive } from './archive-extract';
import { FileMode } from './file-mode';
import { expandGlob, hasGlobMeta } from './path-glob';
import { PathPatterns } from './path-pattern';
import { resolveUser } from './passwd';
import { cleanAbsolute, resolveInRoot } from './safe-path';
import { TreeCopier, type Owner } from './tree-copier';

/** Where a copy may put temporary files. */
export interface CopyOptions {
  /** parent of the scratch layer a `link` copy is built in (default: the OS temp dir) */
  tmpDir?: string;
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
 *   is 0:0 or `--chown`, mtimes kept;
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
  if (action.link) return copyLinked(action, srcRoot, destRoot, opts);
  const owner = await resolveOwner(action.chown, destRoot);
  const chmod = action.chmod === undefined ? undefined : FileMode.parse(action.chmod);
  const exclude = action.exclude && action.exclude.length > 0 ? new PathPatterns(action.exclude) : undefined;
  const dest = await resolveInRoot(destRoot, action.dest);
  if (action.parents) {
    for (const pattern of action.srcPaths) {
      await copyWithParents(pattern, srcRoot, destRoot, dest, { owner, chmod, exclude });
    }
    return;
  }
  const sources: string[] = [];
  for (const pattern of action.srcPaths) sources.push(...(await expandSources(srcRoot, pattern)));
  const destStat = await statOrUndefined(dest);
  const intoDir = action.dest.endsWith('/') || action.srcPaths.length > 1 || destStat?.isDirectory() === true;
  const copier = new TreeCopier({ owner, chmod, exclude });
  for (const src of sources) {
    const srcHost = await resolveInRoot(srcRoot, src);
    const st = await fsp.stat(srcHost);
    if (st.isDirectory()) {
      await mkdirAll(destRoot, dest, 0o755, owner);
      await copier.copyChildren(srcHost, dest);
    } else if (action.extract && st.isFile() && (await isArchive(srcHost))) {
      await mkdirAll(destRoot, dest, 0o755, owner);
      // The reference BuildKit keeps the archive's owners even with --chown (newer ones apply it).
      await extractArchive(srcHost, dest, null);
    } else {
      const target = intoDir ? path.join(dest, path.posix.basename(src)) : dest;
      await mkdirAll(destRoot, path.dirname(target), 0o755, owner);
      await copier.copyEntry(srcHost, target, st);
    }
  }
}

/** The matches of one source pattern, `/a/b` form; a plain path must exist once followed. */
async function expandSources(srcRoot: string, pattern: string): Promise<string[]> {
  const matches = await expandGlob(srcRoot, pattern);
  // BuildKit's Dockerfile COPY allows an empty wildcard; a plain path must exist, and
  // exist once followed (a symlink to a missing file is missing too).
  if (!hasGlobMeta(pattern) && (matches.length === 0 || !(await statOrUndefined(await resolveInRoot(srcRoot, matches[0]))))) {
    throw new BuildError('not-found', `Cannot copy ${JSON.stringify(pattern)}: not found in the source`);
  }
  return matches.map(cleanAbsolute);
}

/** COPY --parents for one source: BuildKit copies the pivot directory with an include pattern. */
async function copyWithParents(
  source: string,
  srcRoot: string,
  destRoot: string,
  dest: string,
  opts: { owner: Owner; chmod?: FileMode; exclude?: PathPatterns },
): Promise<void> {
  const cut = source.indexOf('/./');
  const pivot = cut >= 0 ? source.slice(0, cut) || '/' : '/';
  const inner = cleanAbsolute(cut >= 0 ? source.slice(cut + 3) : source).slice(1);
  if (!hasGlobMeta(pivot) && !hasGlobMeta(inner)) {
    const required = await resolveInRoot(srcRoot, path.posix.join(pivot, inner));
    if (!(await statOrUndefined(required))) throw new BuildError('not-found', `Cannot copy ${JSON.stringify(source)}: not found in the source`);
  }
  const include = new PathPatterns([inner]);
  for (const root of (await expandGlob(srcRoot, pivot)).map(cleanAbsolute)) {
    const rootHost = await resolveInRoot(srcRoot, root);
    const st = await fsp.stat(rootHost);
    await mkdirAll(destRoot, dest, 0o755, opts.owner);
    if (st.isDirectory()) await new TreeCopier({ ...opts, include }).copyChildren(rootHost, dest);
    else await new TreeCopier(opts).copyEntry(rootHost, path.join(dest, path.posix.basename(root)), st);
  }
}

/** COPY --link: copy onto scratch, then merge that layer over the destination. */
async function copyLinked(action: CopyAction, srcRoot: string, destRoot: string, opts: CopyOptions): Promise<void> {
  const scratch = await fsp.mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'copy-link-'));
  try {
    await copyAction({ ...action, link: false }, srcRoot, scratch);
    await new TreeCopier({ owner: null, replaceConflicts: true }).copyChildren(scratch, destRoot);
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
  const owner = await resolveOwner(action.chown, destRoot);
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
  const owner = await resolveOwner(action.chown, destRoot);
  const target = await resolveInRoot(destRoot, action.path);
  const parent = await statOrUndefined(path.dirname(target));
  if (!parent?.isDirectory()) throw new BuildError('not-found', `Cannot write file ${action.path}: its parent does not exist`);
  const existing = await fsp.lstat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new BuildError('failed-precondition', `Cannot write file ${action.path}: it is a directory`);
  await fsp.writeFile(target, action.data, { encoding: 'utf8' });
  if (!existing) await fsp.chmod(target, action.mode & 0o777 & ~0o022);
  await fsp.lchown(target, owner.uid, owner.gid);
}

async function resolveOwner(chown: Chown | undefined, destRoot: string): Promise<Owner> {
  if (!chown) return { uid: 0, gid: 0 };
  // BuildKit's chown: a numeric user without a group takes its uid as gid, whatever /etc/passwd says.
  if (chown.group === undefined && /^[0-9]+$/.test(chown.user)) return { uid: Number(chown.user), gid: Number(chown.user) };
  const user = await resolveUser(destRoot, chown.group === undefined ? chown.user : `${chown.user}:${chown.group}`);
  return { uid: user.uid, gid: user.gid };
}

/** Creates `target` (a host path inside `root`) and its missing parents, each with mode and owner. */
async function mkdirAll(root: string, target: string, mode: number, owner: Owner): Promise<void> {
  const st = await statOrUndefined(target);
  if (st?.isDirectory()) return;
  if (st) throw new BuildError('failed-precondition', `Cannot create directory /${path.relative(root, target)}: a file is in the way`);
  if (target === root) return;
  // The parent may be a symlink (created by an earlier step): resolve it inside root again.
  const parent = await resolveInRoot(root, path.relative(root, path.dirname(target)));
  await mkdirAll(root, parent, mode, owner);
  await makeDir(path.join(parent, path.basename(target)), mode, owner);
}

async function makeDir(p: string, mode: number, owner: Owner): Promise<void> {
  try {
    await fsp.mkdir(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await fsp.lstat(p)).isDirectory()) return;
    throw err;
  }
  await fsp.lchown(p, owner.uid, owner.gid);
  // BuildKit's os.Mkdir runs under the daemon's umask (022); apply it explicitly so our
  // result does not depend on this process's umask.
  await fsp.chmod(p, mode & 0o7777 & ~0o022);
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}
