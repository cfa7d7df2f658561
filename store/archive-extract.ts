import { execFile } from 'node:child_process';
import { createWriteStream, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import { BuildError } from '../solver/build-error';
import { openDecompressed, type DecompressedFile } from './archive-decompress';
import { cleanAbsolute, resolveInRoot } from './safe-path';
import type { Owner } from './tree-copier';

const execFileP = promisify(execFile);
type TarEntry = tar.ExtractEvents['entry'][1];

/**
 * Whether `file` is an archive ADD unpacks, decided as BuildKit does (isArchivePath): it
 * decompresses (plain, gzip, bzip2, xz) and its first tar header reads. Only the beginning
 * of the file is read.
 */
export async function isArchive(file: string, signal?: AbortSignal): Promise<boolean> {
  const st = await fsp.lstat(file);
  if (!st.isFile()) return false;
  const input = await openDecompressed(file, signal);
  const extract = tar.extract();
  const feeding = pipeline(input.stream, extract).catch(() => undefined);
  try {
    const first = await extract[Symbol.asyncIterator]().next();
    return first.done !== true;
  } catch {
    return false;
  } finally {
    extract.destroy();
    await input.close();
    await feeding;
  }
}

/**
 * Unpacks the tar archive `file` into the directory `destDir`, as Docker's chrootarchive
 * Untar does (BuildKit's ADD): `destDir` acts as the root of the archive, so every name and
 * every hard link target is resolved inside it, with symlinks followed inside it (`../`
 * stops at it, an absolute link restarts from it); nothing outside `destDir` is written.
 * Entries keep their mode and times and their archive uid:gid unless `owner` is given (ADD
 * --chown); parents the archive does not list are created 0755 0:0; an existing entry is
 * replaced, an existing directory takes the entry's metadata; the root entry is skipped.
 * Streams the archive: memory does not grow with its size.
 */
export async function extractArchive(file: string, destDir: string, owner: Owner | null, signal?: AbortSignal): Promise<void> {
  const root = path.resolve(destDir);
  const input: DecompressedFile = await openDecompressed(file, signal);
  const extract = tar.extract();
  const feeding = pipeline(input.stream, extract);
  feeding.catch((err: unknown) => extract.destroy(err instanceof Error ? err : new Error(String(err))));
  const dirTimes: Array<[string, Date]> = [];
  try {
    for await (const entry of extract) {
      signal?.throwIfAborted();
      await extractEntry(entry, root, owner, dirTimes, signal);
    }
    await feeding;
    await input.finished();
  } catch (err) {
    extract.destroy();
    await feeding.catch(() => undefined);
    throw err instanceof BuildError ? err : new BuildError('invalid-argument', `Cannot extract archive ${path.basename(file)}: ${(err as Error).message}`, { cause: err });
  } finally {
    await input.close();
  }
  for (const [dir, mtime] of dirTimes.reverse()) await fsp.utimes(dir, mtime, mtime);
}

async function extractEntry(entry: TarEntry, root: string, owner: Owner | null, dirTimes: Array<[string, Date]>, signal?: AbortSignal): Promise<void> {
  const h = entry.header;
  const name = cleanAbsolute(h.name);
  const target = name === '/' ? root : await resolveInRoot(root, name, { followFinal: false });
  if (target === root) return drain(entry);
  const fail = (why: string): BuildError => new BuildError('invalid-argument', `Cannot extract archive entry ${JSON.stringify(h.name)}: ${why}`);
  // As Docker's Unpack: the parent is created (0755 0:0) only when nothing is at its name; a
  // symlink there is followed inside the root, and a dangling one makes the write fail.
  const lexicalParent = path.posix.dirname(name);
  if (!(await lstatOrUndefined(await resolveInRoot(root, lexicalParent, { followFinal: false })))) {
    await mkdirParents(root, await resolveInRoot(root, lexicalParent)).catch((err: NodeJS.ErrnoException) => {
      throw fail(`its parent is not a directory (${err.code ?? err.message})`);
    });
  }
  const parentStat = await fsp.stat(path.dirname(target)).catch(() => undefined);
  if (!parentStat?.isDirectory()) throw fail('its parent directory does not exist in the archive\'s root');
  const found = await lstatOrUndefined(target);
  const keepDir = found?.isDirectory() === true && h.type === 'directory';
  if (found && !keepDir) await fsp.rm(target, { recursive: true, force: true });

  switch (h.type) {
    case 'file':
    case 'contiguous-file':
      // wx: O_EXCL never follows a symlink that might have appeared at the final component.
      await pipeline(entry as unknown as Readable, createWriteStream(target, { flags: 'wx', mode: 0o600 }) as Writable, { signal });
      break;
    case 'directory':
      await drain(entry);
      if (!keepDir) await fsp.mkdir(target, { mode: 0o700 });
      break;
    case 'symlink':
      await drain(entry);
      await fsp.symlink(h.linkname ?? '', target);
      break;
    case 'link': {
      await drain(entry);
      const from = await resolveInRoot(root, cleanAbsolute(h.linkname ?? ''), { followFinal: false });
      const st = await lstatOrUndefined(from);
      if (!st || st.isDirectory()) throw fail(`its hard link target ${JSON.stringify(h.linkname)} is not a file in the archive's root`);
      await fsp.link(from, target);
      await fsp.lchown(target, owner?.uid ?? h.uid, owner?.gid ?? h.gid);
      if (!st.isSymbolicLink()) await fsp.chmod(target, h.mode & 0o7777);
      return;
    }
    case 'character-device':
    case 'block-device':
    case 'fifo':
      await drain(entry);
      await execFileP('mknod', ['-m', (h.mode & 0o7777).toString(8), target, ...(h.type === 'fifo' ? ['p'] : [h.type === 'block-device' ? 'b' : 'c', String(h.devmajor), String(h.devminor)])]);
      break;
    default:
      // pax and GNU long-name headers are consumed by tar-stream; anything else has no file form.
      return drain(entry);
  }
  await fsp.lchown(target, owner?.uid ?? h.uid, owner?.gid ?? h.gid);
  // chmod after chown: chown clears setuid and setgid bits.
  if (h.type !== 'symlink') await fsp.chmod(target, h.mode & 0o7777);
  const mtime = h.mtime ?? new Date(0);
  if (h.type === 'directory') dirTimes.push([target, mtime]);
  else await fsp.lutimes(target, mtime, mtime);
}

/** Creates the missing directories from `root` down to `dir` (a host path inside root), 0755 0:0. */
async function mkdirParents(root: string, dir: string): Promise<void> {
  const rel = path.relative(root, dir);
  if (rel === '') return;
  let cur = root;
  for (const part of rel.split(path.sep)) {
    cur = path.join(cur, part);
    const st = await lstatOrUndefined(cur);
    if (st?.isDirectory()) continue;
    if (st) throw Object.assign(new Error(`${part} is not a directory`), { code: 'ENOTDIR' });
    await fsp.mkdir(cur);
    await fsp.lchown(cur, 0, 0);
    await fsp.chmod(cur, 0o755);
  }
}

async function drain(entry: TarEntry): Promise<void> {
  for await (const _chunk of entry) {
    // skipped: the bytes only need to pass
  }
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  return fsp.lstat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
}
