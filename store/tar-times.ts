import { BuildError } from '../solver/build-error';
import { encodePaxRecords, octal, padding, writeChecksum } from './tar-header';

const BLOCK = 512;
/** PAX bodies are small (names, times, a few attributes); anything larger is not ours to rewrite. */
const MAX_PAX_BYTES = 1024 * 1024;
const TIME_RECORDS = ['mtime', 'atime', 'ctime'];
/** Entry types whose size field says nothing: no content follows them (as Go's archive/tar reads). */
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

/** How rewriteTarTimes treats a timestamp: `clamp` lowers what is later than the epoch, `set` replaces every one. */
export type TimeRewrite = 'clamp' | 'set';

/**
 * Rewrites the timestamps of a tar stream's entries, for reproducible images: BuildKit's
 * `rewrite-timestamp=true` clamps every time later than SOURCE_DATE_EPOCH to it; its tar and
 * local exporters give every file the epoch. The ustar mtime field is rewritten (and the
 * checksum with it); a PAX header's mtime, atime and ctime records likewise, re-encoded with
 * their new length. Content passes through as it came.
 *
 * Streamed: at most one header and one PAX body are held; a stream that is not a tar (a short
 * block, a bad size) fails with an error saying where.
 */
export async function* rewriteTarTimes(source: AsyncIterable<Buffer>, epoch: number, mode: TimeRewrite): AsyncGenerator<Buffer> {
  let pending = Buffer.alloc(0);
  /** content bytes (with padding) still to pass through before the next header */
  let passThrough = 0;
  let offset = 0;
  for await (const chunk of source) {
    let buf = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    pending = Buffer.alloc(0);
    while (buf.length > 0) {
      if (passThrough > 0) {
        const n = Math.min(passThrough, buf.length);
        yield buf.subarray(0, n);
        passThrough -= n;
        offset += n;
        buf = buf.subarray(n);
        continue;
      }
      if (buf.length < BLOCK) break;
      const header = Buffer.from(buf.subarray(0, BLOCK));
      if (header.every((b) => b === 0)) {
        yield header;
        offset += BLOCK;
        buf = buf.subarray(BLOCK);
        continue;
      }
      const type = String.fromCharCode(header[156]);
      const size = HEADER_ONLY.has(type) ? 0 : readSize(header, offset);
      const padded = size + padding(size).length;
      if (type === 'x') {
        // the whole PAX body is needed to rewrite it
        if (size > MAX_PAX_BYTES) throw notTar(offset, `a PAX header of ${size} bytes`);
        if (buf.length < BLOCK + padded) break;
        const body = rewritePax(buf.subarray(BLOCK, BLOCK + size), epoch, mode, offset);
        if (body.length !== size) header.write(octal(body.length, 11), 124);
        writeChecksum(header);
        yield Buffer.concat([header, body, padding(body.length)]);
        offset += BLOCK + padded;
        buf = buf.subarray(BLOCK + padded);
        continue;
      }
      rewriteHeaderMtime(header, epoch, mode);
      yield header;
      offset += BLOCK;
      buf = buf.subarray(BLOCK);
      passThrough = padded;
    }
    if (buf.length > 0) pending = Buffer.from(buf);
  }
  if (pending.length > 0 || passThrough > 0) throw notTar(offset, 'an archive that ends in the middle of an entry');
}

function rewrittenTime(value: number, epoch: number, mode: TimeRewrite): number {
  return mode === 'set' || value > epoch ? epoch : value;
}

function rewriteHeaderMtime(header: Buffer, epoch: number, mode: TimeRewrite): void {
  const mtime = readNumber(header, 136, 12);
  const next = rewrittenTime(mtime, epoch, mode);
  if (next === mtime) return;
  header.write(octal(next, 11), 136);
  writeChecksum(header);
}

/** Re-encodes a PAX body with its time records rewritten, every other record as it was. */
function rewritePax(body: Buffer, epoch: number, mode: TimeRewrite, offset: number): Buffer {
  const records = new Map<string, Buffer>();
  let changed = false;
  for (let at = 0; at < body.length; ) {
    const space = body.indexOf(0x20, at);
    const len = space < 0 ? NaN : Number(body.toString('latin1', at, space));
    if (!Number.isInteger(len) || len <= 0 || at + len > body.length || body[at + len - 1] !== 0x0a) throw notTar(offset, 'a malformed PAX record');
    const record = body.subarray(space + 1, at + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq < 0) throw notTar(offset, 'a PAX record without "="');
    const key = record.toString('utf8', 0, eq);
    let value = Buffer.from(record.subarray(eq + 1));
    if (TIME_RECORDS.includes(key)) {
      const t = Number(value.toString('latin1'));
      if (!Number.isFinite(t)) throw notTar(offset, `a PAX ${key} that is not a number`);
      const next = rewrittenTime(t, epoch, mode);
      if (next !== t) {
        value = Buffer.from(String(next));
        changed = true;
      }
    }
    records.set(key, value);
    at += len;
  }
  // untouched bodies keep their bytes (and record order) exactly
  return changed ? encodePaxRecords(records) : Buffer.from(body);
}

function readSize(header: Buffer, offset: number): number {
  const size = readNumber(header, 124, 12);
  if (!Number.isSafeInteger(size) || size < 0) throw notTar(offset, 'an entry with an unreadable size');
  return size;
}

/** An octal field, or base-256 when its first byte has the high bit set (GNU, tar-stream). */
function readNumber(header: Buffer, at: number, len: number): number {
  if (header[at] & 0x80) {
    let n = header[at] & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + header[at + i];
    return n;
  }
  const text = header.toString('latin1', at, at + len).replace(/[\0 ]+$/, '').trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function notTar(offset: number, what: string): BuildError {
  return new BuildError('invalid-argument', `Cannot rewrite the timestamps of a tar: ${what} at byte ${offset}`);
}
