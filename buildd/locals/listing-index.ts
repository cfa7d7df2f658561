import { promises as fsp } from 'node:fs';
import type { FileEntryMessage } from '../api/messages';

/**
 * One entry of a kept local's index: what the client listed for it, without the local's name.
 * The index of a generation is the listing it was built from, so comparing a new listing with
 * it needs no lstat of the kept copy.
 */
export type IndexEntry = Omit<FileEntryMessage, 'local'>;

/**
 * How an entry of a new listing differs from the kept one at the same path:
 * - `same`: nothing differs; the kept file can be shared (hardlinked) as it is;
 * - `metadata`: only mode, owner, link target or extended attributes differ; the kept content is
 *   right but the entry needs an inode of its own (a hardlink would share the old metadata);
 * - `content`: new, or its type, size or mtime changed: the content may differ and is asked for
 *   (fsutil's DiffMetadata draws the same line: size and mtime stand for the content).
 */
export type EntryChange = 'same' | 'metadata' | 'content';

export function compareEntry(kept: IndexEntry | undefined, next: IndexEntry): EntryChange {
  if (kept === undefined || kept.type !== next.type || kept.size !== next.size || kept.mtime_ms !== next.mtime_ms) return 'content';
  if (kept.mode !== next.mode || kept.uid !== next.uid || kept.gid !== next.gid || kept.link_target !== next.link_target) return 'metadata';
  return sameXattrs(kept.xattrs, next.xattrs) ? 'same' : 'metadata';
}

function sameXattrs(a: Record<string, Buffer>, b: Record<string, Buffer>): boolean {
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  return names.every((n) => Object.hasOwn(b, n) && (b[n] as Buffer).equals(a[n] as Buffer));
}

/** One line of index.jsonl: short names, xattr values in base64. */
interface IndexLine {
  p: string;
  t: IndexEntry['type'];
  m: number;
  u: number;
  g: number;
  mt: number;
  s: number;
  l?: string;
  x?: Record<string, string>;
}

export function indexLine(e: IndexEntry): string {
  const line: IndexLine = { p: e.path, t: e.type, m: e.mode, u: e.uid, g: e.gid, mt: e.mtime_ms, s: e.size };
  if (e.link_target !== '') line.l = e.link_target;
  const names = Object.keys(e.xattrs);
  if (names.length > 0) line.x = Object.fromEntries(names.map((n) => [n, (e.xattrs[n] as Buffer).toString('base64')]));
  return JSON.stringify(line);
}

/**
 * Parses index.jsonl as written by {@link indexLine}. The file is the daemon's own (written
 * atomically with its generation), so a line that does not parse means a damaged store: the
 * caller drops the generation rather than trusting it.
 */
export function parseIndex(text: string): Map<string, IndexEntry> {
  const out = new Map<string, IndexEntry>();
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const l = JSON.parse(raw) as IndexLine;
    if (typeof l.p !== 'string' || typeof l.s !== 'number' || typeof l.mt !== 'number') throw new Error(`Cannot read the index: bad line ${raw.slice(0, 80)}`);
    const xattrs: Record<string, Buffer> = {};
    for (const [n, v] of Object.entries(l.x ?? {})) xattrs[n] = Buffer.from(v, 'base64');
    out.set(l.p, { path: l.p, type: l.t, mode: l.m, uid: l.u, gid: l.g, mtime_ms: l.mt, size: l.s, link_target: l.l ?? '', xattrs });
  }
  return out;
}

/** Writes an index and syncs it, before its generation is published: a published index is whole. */
export async function writeIndexFile(file: string, entries: Iterable<IndexEntry>): Promise<void> {
  const fh = await fsp.open(file, 'wx', 0o600);
  try {
    let batch: string[] = [];
    for (const e of entries) {
      batch.push(indexLine(e));
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

/** An entry's mtime as utimes takes it, seconds as a double: half a microsecond more lands on the intended millisecond. */
export function utimeSeconds(ms: number): number {
  return ms / 1000 + 5e-7;
}
