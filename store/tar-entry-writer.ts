import { execFile } from 'node:child_process';
import { chmodSync, createWriteStream, lchownSync, linkSync, lutimesSync, mkdirSync, promises as fsp, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type * as tar from 'tar-stream';
import { cleanAbsolute, resolveInRootSync } from './safe-path';
import type { Owner } from './tree-copier';
import { lstatOrUndefinedSync } from './path-exists';
import { entryXattrs } from './tar-xattrs';
import { writeXattrs, type Xattrs } from './xattrs';

const execFileP = promisify(execFile);
/** One entry of an extract stream: its header and a readable of its content. */
type TarEntry = tar.ExtractEvents['entry'][1];

/** How {@link writeTarEntry} treats the points where layers and archives differ. */
export interface TarEntryWriteOptions {
  /** Absolute host path of the root the tar unpacks into; hard link targets resolve inside it. */
  root: string;
  /** uid:gid written instead of the header's (ADD --chown); null keeps the header's. */
  owner: Owner | null;
  /**
   * What a hard link's inode ends up with. 'target': the target's owner, mode and times stay
   * (a layer records one inode twice, its metadata is the target's). 'header': the link entry's
   * owner and mode are set on the shared inode, as Docker's Untar does; times stay.
   */
  hardLinkMetadata: 'target' | 'header';
  /**
   * Whether a 0:0 character device is skipped: on an overlay mount it would read as a whiteout
   * of what lower layers hold at that path.
   */
  skipZeroCharDevice: boolean;
  /**
   * Receives [path, mtime] of each directory written, in archive order, for the caller to
   * apply after the last entry (deepest first): later children would change the times.
   */
  dirTimes: Array<[string, Date]>;
  /** Makes the error thrown for an entry the root cannot hold, from the reason given. */
  fail: (why: string) => Error;
  /** Names the root in those reasons, e.g. "the layer's root". */
  rootName: string;
  signal?: AbortSignal;
}

/**
 * Writes one tar entry at `target` and sets its owner, mode, extended attributes and times
 * from the header (a directory's times go to `options.dirTimes` instead).
 *
 * Extended attributes come from the entry's SCHILY.xattr.* PAX records, as containerd's and
 * Docker's unpackers set them: every record, after the owner (chown drops
 * security.capability); one the file system or kernel refuses with ENOTSUP or EPERM is left
 * out as they do, except security.capability, which fails; overlayfs' trusted.overlay.* are
 * never written (see writeXattrs). Exact bytes need an extract from createTarExtract.
 *
 * The caller resolves `target` inside `options.root` with the final component not followed,
 * skips the root itself, and makes sure the parent directory exists by its own rules. Given
 * that, nothing outside the root is written: what is at `target` is removed first (an existing
 * directory stays for a directory entry), the file is opened O_EXCL, symlink/link/mknod never
 * follow the final component, ownership and times are set with lchown/lutimes, and a hard link
 * target is resolved inside the root without following its own last component, so it is never
 * a file outside the root nor a directory.
 *
 * Resolves false when the entry type has no file form (its content is drained, nothing is
 * left at `target`), true otherwise.
 */
export async function writeTarEntry(entry: TarEntry, target: string, options: TarEntryWriteOptions): Promise<boolean> {
  const h = entry.header;
  const { owner, signal } = options;
  // Read before anything is written: a value that cannot be kept exactly fails the entry.
  const xattrs = entryXattrs(h, options.fail);
  // The metadata calls below are synchronous: each takes microseconds, a thread-pool round trip
  // far more, and a layer of 300 symlinks spent 0.3 s waiting on them one after another.
  const found = lstatOrUndefinedSync(target);
  const keepDir = found?.isDirectory() === true && h.type === 'directory';
  if (found?.isDirectory() === true && !keepDir) await fsp.rm(target, { recursive: true, force: true });
  else if (found && !keepDir) unlinkSync(target);

  // The header types promise strings and a Date, but tar-stream decodes an empty linkname as
  // null: '' makes such a link fail inside the root rather than name a file called "null".
  const linkname = h.linkname ?? '';
  switch (h.type) {
    case 'file':
    case 'contiguous-file':
      await writeFileEntry(entry, target, h.size ?? 0, signal);
      break;
    case 'directory':
      await drainEntry(entry);
      if (!keepDir) mkdirSync(target, { mode: 0o700 });
      break;
    case 'symlink':
      await drainEntry(entry);
      symlinkSync(linkname, target);
      break;
    case 'link': {
      await drainEntry(entry);
      // The link's own last component is not followed: linking to a symlink links the symlink.
      const from = resolveInRootSync(options.root, cleanAbsolute(linkname), { followFinal: false });
      const st = lstatOrUndefinedSync(from);
      if (!st || st.isDirectory()) throw options.fail(`its hard link target ${JSON.stringify(h.linkname)} is not a file in ${options.rootName}`);
      linkSync(from, target);
      if (options.hardLinkMetadata === 'header') lchownSync(target, owner?.uid ?? h.uid, owner?.gid ?? h.gid);
      // The inode is shared: its attributes are the link entry's as well, as Docker sets them.
      await setXattrs(target, xattrs, options);
      // chmod follows symlinks: a link to a symlink would change the symlink's target.
      if (options.hardLinkMetadata === 'header' && !st.isSymbolicLink()) chmodSync(target, h.mode & 0o7777);
      return true;
    }
    case 'character-device':
    case 'block-device':
    case 'fifo':
      await drainEntry(entry);
      if (options.skipZeroCharDevice && h.type === 'character-device' && h.devmajor === 0 && h.devminor === 0) return true;
      // Device nodes are rare (an image's /dev is a runtime mount): one mknod spawn each is cheap enough.
      await execFileP('mknod', ['-m', (h.mode & 0o7777).toString(8), target, ...(h.type === 'fifo' ? ['p'] : [h.type === 'block-device' ? 'b' : 'c', String(h.devmajor), String(h.devminor)])]);
      break;
    default:
      // pax and GNU long-name headers are consumed by tar-stream; anything else has no file form.
      await drainEntry(entry);
      return false;
  }
  lchownSync(target, owner?.uid ?? h.uid, owner?.gid ?? h.gid);
  await setXattrs(target, xattrs, options);
  // chmod after chown: chown clears setuid and setgid bits.
  if (h.type !== 'symlink') chmodSync(target, h.mode & 0o7777);
  const mtime = h.mtime ?? new Date(0);
  if (h.type === 'directory') options.dirTimes.push([target, mtime]);
  else lutimesSync(target, mtime, mtime);
  return true;
}

/** Files up to this size are gathered and written in one synchronous open/write/close. */
const SMALL_FILE_BYTES = 256 * 1024;

/**
 * Writes a file entry's content to a new file at `target` (O_EXCL: never through a symlink that
 * might have appeared at the final component, 0600 until its mode is set). A small file is
 * gathered first and written in one go; a larger one streams.
 */
async function writeFileEntry(entry: TarEntry, target: string, size: number, signal?: AbortSignal): Promise<void> {
  if (size > SMALL_FILE_BYTES) {
    await pipeline(entry as unknown as AsyncIterable<Buffer>, createWriteStream(target, { flags: 'wx', mode: 0o600 }) as Writable, { signal });
    return;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of entry as unknown as AsyncIterable<Buffer>) {
    signal?.throwIfAborted();
    chunks.push(chunk);
  }
  writeFileSync(target, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), { flag: 'wx', mode: 0o600 });
}

async function setXattrs(target: string, xattrs: Xattrs, options: TarEntryWriteOptions): Promise<void> {
  if (xattrs.size > 0) await writeXattrs(target, xattrs, { fail: (name, reason) => options.fail(`its extended attribute ${name} cannot be set: ${reason}`) });
}

/** Reads an entry to its end without keeping it (tar-stream needs every entry consumed). */
export async function drainEntry(entry: TarEntry): Promise<void> {
  for await (const _chunk of entry) {
    // skipped: the bytes only need to pass
  }
}

