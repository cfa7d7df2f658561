import { xattrBytes } from '../buildd/api/entry-xattrs';
import type { WalkEntry } from './context-walk';

/** Bounds of one FileEntries message: the daemon takes 1024 entries, gRPC 4 MiB. */
export const BATCH_ENTRIES = 512;
export const BATCH_BYTES = 512 * 1024;

/** A FileEntry of local `local` (shape of buildd.v1.FileEntry) for walk entry `e`. */
export function listingEntry(local: string, e: WalkEntry): object {
  return {
    local,
    path: e.rel,
    type: e.type,
    mode: e.mode,
    // As BuildKit's client (resetUIDAndGID in its filesync): a context arrives owned by
    // 0:0 whoever owns it on this machine, so a bind mount of it shows root's files.
    uid: 0,
    gid: 0,
    mtime_ms: e.mtimeMs,
    link_target: e.linkTarget,
    size: e.size,
    xattrs: Object.fromEntries(e.xattrs),
  };
}

/** About what `e` adds to a FileEntries message, for BATCH_BYTES. */
export function listingEntryBytes(e: WalkEntry): number {
  return 64 + Buffer.byteLength(e.rel) + Buffer.byteLength(e.linkTarget) + xattrBytes(e.xattrs);
}
