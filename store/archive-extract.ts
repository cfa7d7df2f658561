import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { createTarExtract } from './tar-xattrs';
import { BuildError } from '../solver/build-error';
import { detectCompression, openDecompressed, type DecompressedFile } from './archive-decompress';
import { cleanAbsolute, resolveInRoot } from './safe-path';
import { writeTarEntry } from './tar-entry-writer';
import type { Owner } from './tree-copier';
import { drainEntry } from './tar-entry-writer';
import { lstatOrUndefined } from './path-exists';
import { mkdirAll } from './mkdir-all';

type TarEntry = tar.ExtractEvents['entry'][1];

/**
 * Whether `file` is an archive ADD unpacks, decided as BuildKit does (isArchivePath): it
 * decompresses (plain, gzip, bzip2, xz) and its first tar header reads; a file that is not
 * compressed and not a tar, or that decompresses to something other than a tar, is not one
 * (ADD copies it as it is). Only the beginning of an archive is read.
 *
 * A file whose first bytes say gzip, bzip2 or xz but that does not decompress (truncated,
 * corrupt) rejects with `Cannot extract archive <name>: <the decompressor's reason>`, even
 * when its first tar header cannot be reached: copying it as it is would hide a broken
 * archive in the image. (BuildKit's isArchivePath returns false there and copies the file;
 * this is stricter on purpose.) To tell the two apart, a compressed file whose first tar
 * header does not read is decompressed up to a tar header's worth of bytes: a decompressor
 * that fails before that is what kept the header from reading; one that gets that far holds a
 * compressed file that is not a tar (a `.sql.gz`), copied as it is without reading it all.
 */
export async function isArchive(file: string, signal?: AbortSignal): Promise<boolean> {
  const st = await fsp.lstat(file);
  if (!st.isFile()) return false;
  if (await firstTarHeaderReads(file, signal)) return true;
  // The header may also fail to read because the decompressor failed first.
  if ((await detectCompression(file)) !== 'none') await assertDecompresses(file, signal);
  return false;
}

async function firstTarHeaderReads(file: string, signal?: AbortSignal): Promise<boolean> {
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

/** What a tar header takes: a file that decompresses this far failed to be a tar, not to decompress. */
const TAR_HEADER_BYTES = 512;

/**
 * Decompresses `file` until a tar header's worth of bytes came out (or its end), keeping
 * nothing; rejects naming the file when the decompressor fails before that.
 */
async function assertDecompresses(file: string, signal?: AbortSignal): Promise<void> {
  const input = await openDecompressed(file, signal);
  try {
    let out = 0;
    for await (const chunk of input.stream as AsyncIterable<Buffer>) {
      out += chunk.length;
      if (out >= TAR_HEADER_BYTES) return;
    }
    await input.finished();
  } catch (err) {
    signal?.throwIfAborted();
    throw err instanceof BuildError ? err : extractError(file, err);
  } finally {
    await input.close();
  }
}

function extractError(file: string, err: unknown): BuildError {
  return new BuildError('invalid-argument', `Cannot extract archive ${path.basename(file)}: ${messageOf(err)}`, { cause: err });
}

/** The message of an error from any realm (zlib's errors are not `instanceof Error` in a vm context). */
function messageOf(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
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
  // Keeps PAX values as bytes: a file capability in an ADDed archive is binary.
  const extract = createTarExtract();
  let inputEnded = false;
  input.stream.once('end', () => (inputEnded = true));
  const feeding = pipeline(input.stream, extract);
  feeding.catch((err: unknown) => extract.destroy(new Error(messageOf(err), { cause: err })));
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
    // A decompressor that failed ended its output early: its reason ("Unexpected end of
    // input") says more than the tar parser's "Unexpected end of data" that followed.
    const decompressError = inputEnded ? await input.finished().then(() => undefined, (e: unknown) => e) : undefined;
    if (decompressError !== undefined && !(err instanceof BuildError)) throw extractError(file, decompressError);
    throw err instanceof BuildError ? err : extractError(file, err);
  } finally {
    await input.close();
  }
  for (const [dir, mtime] of dirTimes.reverse()) await fsp.utimes(dir, mtime, mtime);
}

async function extractEntry(entry: TarEntry, root: string, owner: Owner | null, dirTimes: Array<[string, Date]>, signal?: AbortSignal): Promise<void> {
  const h = entry.header;
  const name = cleanAbsolute(h.name);
  const target = name === '/' ? root : await resolveInRoot(root, name, { followFinal: false });
  if (target === root) return drainEntry(entry);
  const fail = (why: string): BuildError => new BuildError('invalid-argument', `Cannot extract archive entry ${JSON.stringify(h.name)}: ${why}`);
  // As Docker's Unpack: the parent is created (0755 0:0) only when nothing is at its name; a
  // symlink there is followed inside the root, and a dangling one makes the write fail.
  const lexicalParent = path.posix.dirname(name);
  if (!(await lstatOrUndefined(await resolveInRoot(root, lexicalParent, { followFinal: false })))) {
    await mkdirAll(root, await resolveInRoot(root, lexicalParent), 0o755, { uid: 0, gid: 0 }).catch((err: NodeJS.ErrnoException) => {
      throw fail(`its parent is not a directory (${err instanceof BuildError ? err.message : err.code ?? err.message})`);
    });
  }
  const parentStat = await fsp.stat(path.dirname(target)).catch(() => undefined);
  if (!parentStat?.isDirectory()) throw fail('its parent directory does not exist in the archive\'s root');
  await writeTarEntry(entry, target, {
    root,
    owner,
    hardLinkMetadata: 'header',
    skipZeroCharDevice: false,
    dirTimes,
    fail,
    rootName: "the archive's root",
    signal,
  });
}
