import type { Xattrs } from './xattrs';

/** The entry types a layer tar holds. */
export type TarEntryType = 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo';

/** What one tar entry's header says; `xattrs` become SCHILY.xattr.* PAX records. */
export interface TarHeaderFields {
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  /** content bytes that follow the header (0 for all but 'file') */
  size: number;
  /** whole seconds since the epoch */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Xattrs;
}

const BLOCK = 512;
/** Two zero blocks end a tar. */
export const TAR_END = Buffer.alloc(2 * BLOCK);
const TYPEFLAG: Record<TarEntryType | 'pax-header', string> = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
  'pax-header': 'x',
};
/** Largest id a 6-digit octal field holds (the layout tar-stream writes). */
const MAX_OCTAL_ID = 0o777777;

/**
 * Encodes the header block(s) of one entry. A plain entry is one ustar block laid out exactly
 * as tar-stream's pack writes it, so layers without extended attributes keep their digests.
 * An entry that needs more (extended attributes, a name or link target ustar cannot hold, an
 * id too large for its field) is preceded by a PAX header as Go's archive/tar writes it: named
 * `dir/PaxHeaders.0/base`, records sorted by key, values as raw bytes (tar-stream's own PAX
 * writer and reader go through UTF-8 strings, which corrupts a binary security.capability).
 */
export function encodeTarHeader(h: TarHeaderFields): Buffer {
  const records = new Map<string, Buffer>();
  const split = splitUstarName(h.name);
  const linkname = h.linkname ?? '';
  if (!split) records.set('path', Buffer.from(h.name));
  if (Buffer.byteLength(linkname) > 100) records.set('linkpath', Buffer.from(linkname));
  if (h.uid > MAX_OCTAL_ID) records.set('uid', Buffer.from(String(h.uid)));
  if (h.gid > MAX_OCTAL_ID) records.set('gid', Buffer.from(String(h.gid)));
  for (const [name, value] of h.xattrs ?? []) records.set('SCHILY.xattr.' + name, value);
  const main = ustarBlock({ ...h, linkname: records.has('linkpath') ? truncate(linkname, 100) : linkname }, split ?? splitUstarName(truncate(h.name, 100)) ?? { name: 'PaxHeader', prefix: '' });
  if (records.size === 0) return main;

  const body = encodePaxRecords(records);
  const slash = h.name.replace(/\/$/, '').lastIndexOf('/');
  const paxName = slash < 0 ? `PaxHeaders.0/${h.name.replace(/\/$/, '')}` : `${h.name.slice(0, slash)}/PaxHeaders.0/${h.name.slice(slash + 1).replace(/\/$/, '')}`;
  const pax = ustarBlock(
    { name: '', type: 'file', mode: 0, uid: 0, gid: 0, size: body.length, mtime: 0 },
    splitUstarName(paxName) ?? { name: truncate(paxName, 100), prefix: '' },
    'pax-header',
  );
  return Buffer.concat([pax, body, padding(body.length), main]);
}

/** Zero bytes that fill content of `size` bytes up to a whole block. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest);
}

/** PAX records, `"<len> <key>=<value>\n"` with len counting the whole record, values as bytes. */
export function encodePaxRecords(records: Map<string, Buffer>): Buffer {
  const keys = [...records.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return Buffer.concat(
    keys.map((key) => {
      const value = records.get(key) as Buffer;
      const rest = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
      let len = rest + String(rest).length;
      if (String(len).length !== String(rest).length) len = rest + String(len).length;
      return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
    }),
  );
}

/** tar-stream's split: ASCII only, name ≤ 100 bytes after moving leading dirs to a ≤ 155 prefix. */
function splitUstarName(full: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(full) !== full.length) return undefined;
  let name = full;
  let prefix = '';
  while (name.length > 100) {
    const i = name.indexOf('/');
    if (i === -1) return undefined;
    prefix += prefix ? '/' + name.slice(0, i) : name.slice(0, i);
    name = name.slice(i + 1);
  }
  if (name.length > 100 || prefix.length > 155) return undefined;
  return { name, prefix };
}

/** A best-effort ASCII stand-in for a field PAX overrides (readers that know PAX ignore it). */
function truncate(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}

function ustarBlock(h: TarHeaderFields, where: { name: string; prefix: string }, type: TarEntryType | 'pax-header' = h.type): Buffer {
  const buf = Buffer.alloc(BLOCK);
  buf.write(where.name, 0);
  buf.write(octal(h.mode & 0o7777, 6), 100);
  buf.write(octal(Math.min(h.uid, MAX_OCTAL_ID + 1), 6), 108);
  buf.write(octal(Math.min(h.gid, MAX_OCTAL_ID + 1), 6), 116);
  if (h.size.toString(8).length > 11) {
    // base-256 as tar-stream and GNU tar write sizes of 8 GiB and more
    buf[124] = 0x80;
    let n = h.size;
    for (let i = 11; i > 0; i--) {
      buf[124 + i] = n & 0xff;
      n = Math.floor(n / 0x100);
    }
  } else {
    buf.write(octal(h.size, 11), 124);
  }
  buf.write(octal(h.mtime | 0, 11), 136);
  buf.write(TYPEFLAG[type], 156);
  if (h.linkname) buf.write(h.linkname, 157);
  buf.write('ustar\u000000', 257, 'latin1');
  buf.write(octal(h.devmajor ?? 0, 6), 329);
  buf.write(octal(h.devminor ?? 0, 6), 337);
  if (where.prefix) buf.write(where.prefix, 345);
  writeChecksum(buf);
  return buf;
}

/** Sets a header block's checksum: the sum of its bytes, the checksum field counted as spaces. */
export function writeChecksum(block: Buffer): void {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i];
  for (let i = 156; i < BLOCK; i++) sum += block[i];
  block.write(octal(sum, 6), 148);
}

/** tar-stream's octal field: zero-padded digits and a space; all sevens when it overflows. */
export function octal(value: number, digits: number): string {
  const s = value.toString(8);
  if (s.length > digits) return '7'.repeat(digits) + ' ';
  return '0'.repeat(digits - s.length) + s + ' ';
}
