import * as tar from 'tar-stream';
import { encodePaxRecords, encodeTarHeader, padding, TAR_END, type TarHeaderFields } from '../../../store/tar-header';
import { createTarExtract, entryXattrs, parsePaxXattrs } from '../../../store/tar-xattrs';

/** A capability as setcap writes it (v2, effective, cap_setuid + cap_net_raw): bytes >= 0x80. */
const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

async function tarStreamHeader(h: TarHeaderFields): Promise<Buffer> {
  const pack = tar.pack();
  const { mtime, ...rest } = h;
  const header = { ...rest, mtime: new Date(mtime * 1000), size: h.type === 'file' ? h.size : 0 };
  if (h.type === 'file') pack.entry(header, Buffer.alloc(h.size));
  else pack.entry(header);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks).subarray(0, 512);
}

/** Reads a tar made of our headers back with the extract layer-apply uses. */
async function readBack(parts: Buffer[]): Promise<Array<{ name: string; linkname: string | null; xattrs: Map<string, Buffer> }>> {
  const extract = createTarExtract();
  const out: Array<{ name: string; linkname: string | null; xattrs: Map<string, Buffer> }> = [];
  const done = (async () => {
    for await (const e of extract) {
      out.push({ name: e.header.name, linkname: e.header.linkname ?? null, xattrs: entryXattrs(e.header, (why) => new Error(why)) });
      for await (const _ of e) {
        // drained
      }
    }
  })();
  extract.end(Buffer.concat(parts));
  await done;
  return out;
}

const base = { mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1700000000 };

describe('encodeTarHeader', () => {
  it.each<[string, TarHeaderFields]>([
    ['a file', { ...base, name: 'etc/passwd', type: 'file', size: 1234, uid: 7, gid: 8, mode: 0o4755 }],
    ['a directory', { ...base, name: 'usr/lib/', type: 'directory', mode: 0o755 }],
    ['a symlink', { ...base, name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' }],
    ['a hard link', { ...base, name: 'b', type: 'link', linkname: 'a' }],
    ['a device', { ...base, name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }],
    ['a fifo', { ...base, name: 'run/fifo', type: 'fifo' }],
    ['a name split into prefix and name', { ...base, name: `${'d'.repeat(90)}/${'e'.repeat(90)}/f`, type: 'file' }],
  ])('lays out %s exactly as tar-stream did, so layers without attributes keep their digests', async (_what, h) => {
    expect(encodeTarHeader(h)).toEqual(await tarStreamHeader(h));
  });

  it('puts extended attributes in a PAX header as Go writes them, values byte for byte', async () => {
    const xattrs = new Map([['security.capability', CAP]]);
    const encoded = encodeTarHeader({ ...base, name: 'xdir/inner', type: 'file', size: 3, xattrs });
    // The PAX header: named dir/PaxHeaders.0/base, typeflag x, one record of 57 bytes.
    expect(encoded.subarray(0, 23).toString('latin1')).toBe('xdir/PaxHeaders.0/inner');
    expect(String.fromCharCode(encoded[156])).toBe('x');
    const body = encoded.subarray(512, 512 + 57);
    expect(body).toEqual(Buffer.concat([Buffer.from('57 SCHILY.xattr.security.capability='), CAP, Buffer.from('\n')]));
    expect(encoded.length).toBe(3 * 512);
    const entries = await readBack([encoded, Buffer.from('abc'), padding(3), TAR_END]);
    expect(entries).toEqual([{ name: 'xdir/inner', linkname: null, xattrs }]);
  });

  it('carries names and link targets ustar cannot hold as PAX path and linkpath records', async () => {
    const long = `${'x'.repeat(120)}`;
    const parts = [
      encodeTarHeader({ ...base, name: long, type: 'symlink', linkname: '/'.concat('t'.repeat(150)) }),
      encodeTarHeader({ ...base, name: 'dir/é', type: 'file', size: 0, xattrs: new Map([['user.note', Buffer.from('hello')]]) }),
      TAR_END,
    ];
    expect(await readBack(parts)).toEqual([
      { name: long, linkname: '/' + 't'.repeat(150), xattrs: new Map() },
      { name: 'dir/é', linkname: null, xattrs: new Map([['user.note', Buffer.from('hello')]]) },
    ]);
  });
});

describe('PAX records', () => {
  it('counts the length digits themselves where the record crosses a power of ten', () => {
    // 'SCHILY.xattr.user.a' (19) + value + ' ', '=', '\n' = 22 + value; 97 + 2 digits = 99, 98 + 3 digits = 101
    for (const valueLen of [75, 76, 77]) {
      const rec = encodePaxRecords(new Map([['SCHILY.xattr.user.a', Buffer.alloc(valueLen, 0x61)]]));
      expect(Number(rec.toString('latin1').split(' ')[0])).toBe(rec.length);
    }
  });

  it('parses SCHILY.xattr records as bytes and leaves other records out', () => {
    const body = encodePaxRecords(new Map([['path', Buffer.from('a/b')], ['SCHILY.xattr.security.capability', CAP], ['SCHILY.xattr.user.x', Buffer.from('=\n=')]]));
    expect(parsePaxXattrs(body)).toEqual(new Map([['security.capability', CAP], ['user.x', Buffer.from('=\n=')]]));
  });

  it('from a plain tar-stream extract, refuses a value tar-stream decoded lossily rather than write it wrong', () => {
    const header = { name: 'f', pax: { 'SCHILY.xattr.security.capability': '\u0001\u0000\u0000\u0002\ufffd ' } } as unknown as tar.Header;
    expect(() => entryXattrs(header, (why) => new Error(`Cannot apply entry "f": ${why}`))).toThrow(
      'Cannot apply entry "f": its extended attribute security.capability is not UTF-8 and was not kept byte for byte',
    );
  });
});
