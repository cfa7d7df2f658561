import * as tar from 'tar-stream';
import { encodePaxRecords, encodeTarHeader, padding, TAR_END, type TarHeaderFields } from '../../../store/tar-header';
import { rewriteTarTimes, type TimeRewrite } from '../../../store/tar-times';

const EPOCH = 1_000_000;
const base = { mode: 0o644, uid: 0, gid: 0, size: 0 };

function entry(h: TarHeaderFields, content = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeTarHeader({ ...h, size: content.length }), content, padding(content.length)]);
}

/** A PAX header carrying `records` for the entry that follows it, as GNU tar and Go write times. */
function paxFor(records: Record<string, string>): Buffer {
  const body = encodePaxRecords(new Map(Object.entries(records).map(([k, v]) => [k, Buffer.from(v)])));
  const header = encodeTarHeader({ ...base, name: 'PaxHeaders.0/x', type: 'file', size: body.length, mtime: 0 });
  header.write('x', 156);
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += header[i];
  for (let i = 156; i < 512; i++) sum += header[i];
  header.write(sum.toString(8).padStart(6, '0') + ' ', 148);
  return Buffer.concat([header, body, padding(body.length)]);
}

const archive = Buffer.concat([
  entry({ ...base, name: 'old.txt', type: 'file', mtime: 500 }, Buffer.from('old content')),
  entry({ ...base, name: 'new.txt', type: 'file', mtime: 2_000_000 }, Buffer.alloc(1500, 7)),
  entry({ ...base, name: 'dir/', type: 'directory', mode: 0o755, mtime: 3_000_000 }),
  entry({ ...base, name: 'link', type: 'symlink', linkname: 'old.txt', mtime: 4_000_000 }),
  paxFor({ mtime: '2500000.25', atime: '400', 'SCHILY.xattr.user.k': 'v' }),
  entry({ ...base, name: 'precise.txt', type: 'file', mtime: 2_500_000 }, Buffer.from('x')),
  TAR_END,
]);

/** Feeds `bytes` in chunks of `size` and reads the result back with tar-stream (checksums verified). */
async function rewriteAndRead(bytes: Buffer, mode: TimeRewrite, size: number) {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  }
  const out: Buffer[] = [];
  for await (const c of rewriteTarTimes(chunks(), EPOCH, mode)) out.push(c);
  const extract = tar.extract();
  const seen: Array<{ name: string; mtime: number; atime?: number; content: string; pax?: Record<string, string> }> = [];
  const done = (async () => {
    for await (const e of extract) {
      const parts: Buffer[] = [];
      for await (const c of e) parts.push(c as Buffer);
      const h = e.header as tar.Header & { atime?: Date; pax?: Record<string, string> };
      seen.push({ name: h.name, mtime: (h.mtime as Date).getTime() / 1000, content: Buffer.concat(parts).toString('latin1'), pax: h.pax });
    }
  })();
  extract.end(Buffer.concat(out));
  await done;
  return { seen, bytes: Buffer.concat(out) };
}

describe('rewriteTarTimes', () => {
  it.each([1, 7, 512, 100_000])('clamps what is later than the epoch and keeps the rest byte for byte (chunks of %i bytes)', async (size) => {
    const { seen, bytes } = await rewriteAndRead(archive, 'clamp', size);
    expect(seen.map((e) => [e.name, e.mtime])).toEqual([['old.txt', 500], ['new.txt', EPOCH], ['dir/', EPOCH], ['link', EPOCH], ['precise.txt', EPOCH]]);
    expect(seen[0].content).toBe('old content');
    expect(seen[1].content).toBe(Buffer.alloc(1500, 7).toString('latin1'));
    // the PAX record is rewritten, the earlier atime and the attribute are kept
    expect(seen[4].pax).toMatchObject({ mtime: String(EPOCH), atime: '400', 'SCHILY.xattr.user.k': 'v' });
    // the first entry, already older, is untouched
    expect(bytes.subarray(0, 1024).equals(archive.subarray(0, 1024))).toBe(true);
  });

  it('sets every time to the epoch with "set"', async () => {
    const { seen } = await rewriteAndRead(archive, 'set', 4096);
    expect(seen.every((e) => e.mtime === EPOCH)).toBe(true);
    expect(seen[4].pax).toMatchObject({ mtime: String(EPOCH), atime: String(EPOCH) });
  });

  it('refuses a stream that ends inside an entry, saying where', async () => {
    const cut = archive.subarray(0, 512 + 100);
    await expect(rewriteAndRead(cut, 'clamp', 64)).rejects.toThrow('Cannot rewrite the timestamps of a tar: an archive that ends in the middle of an entry at byte 612');
  });
});
