import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createTarExtract, entryXattrs } from '../../../store/tar-xattrs';
import { openLayerStream } from './layer-stream';
import { xattrText } from './xattr-text';

/**
 * One path of a flattened image. Times are never part of it: two builders that agree on the
 * rest built the same image. The shape is the one the shared kit's imgdiff.py printed (the
 * tests read it): `mode` as Python's oct() writes it, xattr values as {@link xattrText}.
 */
export interface FileEntry {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';
  /** permission bits with setuid, setgid and sticky, e.g. `0o755` */
  mode: string;
  uid: number;
  gid: number;
  /** files (a hard link takes its target's) */
  size?: number;
  sha256?: string;
  /** a hard link whose target is not in the image: the name it points at */
  linkTo?: string;
  /** symlinks: the link target as written */
  target?: string;
  /** character and block devices: `major:minor` */
  device?: string;
  xattrs?: Record<string, string>;
}

/**
 * An image's files by path (relative, no leading `/` or `./`, no trailing `/`); the root
 * directory itself, where a layer lists it, is `.` (its mode and owner count too).
 */
export type FileTable = Map<string, FileEntry>;

/** What one layer says, in the order it says it, before it is laid over the table. */
type LayerRecord = { path: string; entry: FileEntry } | { path: string; hardlink: string; own: Pick<FileEntry, 'mode' | 'uid' | 'gid' | 'xattrs'> };

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const ROOT = '.';

/** A tar member name as a table path: `./a/b/` is `a/b`, and `./`, `.` or `/` is the root, `.`. */
export function tablePath(name: string): string {
  let p = name.replace(/^\/+/, '');
  while (p.startsWith('./')) p = p.slice(2).replace(/^\/+/, '');
  p = p.replace(/\/+$/, '');
  return p === '' ? ROOT : p;
}

/** Lays the layers (blob files, bottom first) over an empty table, as a runtime would unpack them. */
export async function flattenLayers(layers: readonly string[]): Promise<FileTable> {
  const table: FileTable = new Map();
  for (const layer of layers) await applyLayer(table, layer);
  return table;
}

/**
 * Lays one layer over `table`. OCI whiteouts of the layer act first, on what lower layers
 * left (`.wh.NAME` removes NAME and all below it, `.wh..wh..opq` empties its directory), then
 * its entries are set in order, so a layer may remove a path and add it again. An entry that
 * is not a directory, set where a directory was, removes what was below it.
 */
export async function applyLayer(table: FileTable, layer: string): Promise<void> {
  const records: LayerRecord[] = [];
  const whiteouts: string[] = [];
  const opaques: string[] = [];
  const input = await openLayerStream(layer);
  const extract = createTarExtract(); // PAX values as bytes: tar-stream alone garbles binary ones
  const feeding = pipeline(input.stream, extract);
  feeding.catch((err: unknown) => extract.destroy(err instanceof Error ? err : new Error(String(err))));
  try {
    for await (const item of extract) {
      const h = item.header;
      const p = tablePath(h.name);
      const base = path.posix.basename(p);
      const parent = path.posix.dirname(p); // `.` for a name at the root
      let sha256: string | undefined;
      let size = 0;
      if (h.type === 'file' || h.type === 'contiguous-file') {
        const hash = createHash('sha256');
        for await (const chunk of item as AsyncIterable<Buffer>) {
          hash.update(chunk);
          size += chunk.length;
        }
        sha256 = hash.digest('hex');
      } else {
        for await (const _ of item) void _;
      }
      if (base === OPAQUE) {
        opaques.push(parent);
        continue;
      }
      if (base.startsWith(WHITEOUT)) {
        whiteouts.push(parent === ROOT ? base.slice(WHITEOUT.length) : `${parent}/${base.slice(WHITEOUT.length)}`);
        continue;
      }
      const own: Pick<FileEntry, 'mode' | 'uid' | 'gid' | 'xattrs'> = { mode: `0o${((h.mode ?? 0) & 0o7777).toString(8)}`, uid: h.uid ?? 0, gid: h.gid ?? 0 };
      // a hard link's entry carries its own (the writer repeats the inode's attributes there)
      const xattrs = entryXattrs(h, (why) => new Error(`Cannot read ${h.name} in ${layer}: ${why}`));
      if (xattrs.size > 0) own.xattrs = Object.fromEntries([...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, xattrText(v)]));
      if (h.type === 'link') {
        records.push({ path: p, hardlink: tablePath(h.linkname ?? ''), own });
        continue;
      }
      const entry: FileEntry = { type: entryType(h.type, h.name), ...own };
      if (sha256 !== undefined) Object.assign(entry, { size, sha256 });
      if (entry.type === 'symlink') entry.target = h.linkname ?? '';
      if (entry.type === 'char' || entry.type === 'block') entry.device = `${h.devmajor ?? 0}:${h.devminor ?? 0}`;
      records.push({ path: p, entry });
    }
    await feeding;
    await input.finished();
  } catch (err) {
    extract.destroy();
    throw new Error(`Cannot read layer ${layer}: ${(err as Error).message}`, { cause: err });
  } finally {
    input.close();
  }
  for (const dir of opaques) removeBelow(table, dir);
  for (const victim of whiteouts) {
    table.delete(victim);
    removeBelow(table, victim);
  }
  for (const r of records) {
    if ('hardlink' in r) {
      const target = table.get(r.hardlink);
      // the link's own header gives mode and owner (the inode's, as the target's); the content is the target's
      const content = target?.type === 'file' && target.sha256 !== undefined ? { size: target.size, sha256: target.sha256 } : { linkTo: r.hardlink };
      table.set(r.path, { type: 'file', ...r.own, ...content });
      continue;
    }
    if (r.entry.type !== 'dir' && table.get(r.path)?.type === 'dir') removeBelow(table, r.path);
    table.set(r.path, r.entry);
  }
}

function removeBelow(table: FileTable, dir: string): void {
  const prefix = dir === ROOT ? '' : `${dir}/`;
  for (const key of [...table.keys()]) if (key.startsWith(prefix) && key !== dir && key !== ROOT) table.delete(key);
}

function entryType(type: string | null | undefined, name: string): FileEntry['type'] {
  switch (type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'dir';
    case 'symlink':
      return 'symlink';
    case 'character-device':
      return 'char';
    case 'block-device':
      return 'block';
    case 'fifo':
      return 'fifo';
    default:
      throw new Error(`Cannot read tar entry ${name}: type ${type ?? '(none)'} is not a file system entry`);
  }
}
