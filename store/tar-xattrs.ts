import * as tar from 'tar-stream';
import { BuildError } from '../solver/build-error';
import type { Xattrs } from './xattrs';

const XATTR_RECORD = 'SCHILY.xattr.';

/** Raw SCHILY.xattr.* values of a PAX header, keyed by the header.pax object tar-stream hands out. */
const rawXattrs = new WeakMap<object, Xattrs>();

/** The parts of tar-stream's Extract that {@link createTarExtract} hooks into. */
interface ExtractInternals {
  _header: { type: string | null } | null;
  _pax: Record<string, string> | null;
  _decodeLongHeader(buf: Buffer): void;
}

/**
 * A tar-stream extract that also keeps the raw bytes of each entry's SCHILY.xattr.* PAX
 * records. tar-stream decodes PAX values as UTF-8 strings, which turns a binary value (a
 * file capability holds bytes >= 0x80) into replacement characters; this extract parses the
 * same PAX block again as bytes, for {@link entryXattrs}. Lifecycle: as tar.extract().
 */
export function createTarExtract(): tar.Extract {
  const extract = tar.extract();
  const internals = extract as unknown as ExtractInternals;
  const decode = internals._decodeLongHeader;
  if (typeof decode !== 'function') throw new BuildError('internal', 'Cannot read tar PAX records: this tar-stream version has no _decodeLongHeader');
  internals._decodeLongHeader = function (this: ExtractInternals, buf: Buffer): void {
    decode.call(this, buf);
    if (this._header?.type === 'pax-header' && this._pax) rawXattrs.set(this._pax, parsePaxXattrs(buf));
  };
  return extract;
}

/**
 * The extended attributes an entry's PAX header carries, as raw bytes. From an extract made by
 * {@link createTarExtract} the bytes are exact; from a plain tar.extract() only values that
 * are valid UTF-8 survive, and a value tar-stream could not decode fails rather than be
 * written wrong. `fail` makes the error from the reason.
 */
export function entryXattrs(header: tar.Header, fail: (why: string) => Error): Xattrs {
  // tar-stream sets `pax` to the entry's PAX records as strings (typed unknown).
  const pax = header.pax;
  if (typeof pax !== 'object' || pax === null) return new Map();
  const raw = rawXattrs.get(pax);
  if (raw) return raw;
  const out: Xattrs = new Map();
  for (const [key, value] of Object.entries(pax as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!key.startsWith(XATTR_RECORD) || typeof value !== 'string') continue;
    const name = key.slice(XATTR_RECORD.length);
    if (value.includes('\ufffd')) throw fail(`its extended attribute ${name} is not UTF-8 and was not kept byte for byte`);
    out.set(name, Buffer.from(value, 'utf8'));
  }
  return out;
}

/** The SCHILY.xattr.* records of one PAX block, values as the bytes they are. */
export function parsePaxXattrs(buf: Buffer): Xattrs {
  const out: Xattrs = new Map();
  let at = 0;
  while (at < buf.length) {
    const space = buf.indexOf(0x20, at);
    if (space < 0) break;
    const len = Number(buf.subarray(at, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= space - at + 1 || at + len > buf.length) break;
    const record = buf.subarray(space + 1, at + len - 1); // without the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq > 0) {
      const key = record.subarray(0, eq).toString('utf8');
      if (key.startsWith(XATTR_RECORD)) out.set(key.slice(XATTR_RECORD.length), Buffer.from(record.subarray(eq + 1)));
    }
    at += len;
  }
  return out;
}
