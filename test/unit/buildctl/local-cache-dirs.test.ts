import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fsp, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { daemonCacheFlags, LocalCacheDirs, presentBlobs } from '../../../buildctl/local-cache-dirs';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('LocalCacheDirs (buildctl side of type=local caches)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'cache-dirs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('src and dest stay on the client; a local entry without them is refused', () => {
    const { sent, dirs } = daemonCacheFlags([{ type: 'registry', attrs: { ref: 'r/x' } }, { type: 'local', attrs: { dest: 'out', mode: 'max' } }], 'dest');
    expect(sent).toEqual([{ type: 'registry', attrs: { ref: 'r/x' } }, { type: 'local', attrs: { mode: 'max' } }]);
    expect(dirs.get(1)).toBe(path.resolve('out'));
    expect(() => daemonCacheFlags([{ type: 'local', attrs: {} }], 'src')).toThrow('src=DIR is missing');
  });

  test('tells the daemon the blobs a dest has (names that are digests only), none for a dest not made yet', async () => {
    expect(await presentBlobs(path.join(dir, 'not-yet'))).toEqual([]);
    const blobs = path.join(dir, 'blobs', 'sha256');
    await fsp.mkdir(blobs, { recursive: true });
    await fsp.writeFile(path.join(blobs, 'a'.repeat(64)), 'x');
    await fsp.writeFile(path.join(blobs, 'partial.tmp'), 'x');
    expect(await presentBlobs(dir)).toEqual([`sha256:${'a'.repeat(64)}`]);
  });

  test('writes blobs verified against their digests and tags the manifest in index.json, keeping other tags', async () => {
    const dirs = new LocalCacheDirs(new Map(), new Map([[0, dir]]));
    const blob = Buffer.from('layer data');
    const d = digestOf(blob);
    await dirs.write({ export: 0, digest: d, data: blob.subarray(0, 4), eof: false, index: false, size: 0, tag: '' });
    await dirs.write({ export: 0, digest: d, data: blob.subarray(4), eof: true, index: false, size: 0, tag: '' });
    expect(await fsp.readFile(path.join(dir, 'blobs', 'sha256', d.slice(7)))).toEqual(blob);
    await dirs.write({ export: 0, digest: d, data: Buffer.alloc(0), eof: false, index: true, size: blob.length, tag: 'v1' });
    await dirs.write({ export: 0, digest: d, data: Buffer.alloc(0), eof: false, index: true, size: blob.length, tag: 'v2' });
    await dirs.write({ export: 0, digest: d, data: Buffer.alloc(0), eof: false, index: true, size: blob.length, tag: 'v1' });
    const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> };
    expect(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name'])).toEqual(['v2', 'v1']);
    await fsp.access(path.join(dir, 'oci-layout'));
  });

  test('a blob that does not hash to its digest fails and leaves nothing; a name that is no digest is refused', async () => {
    const dirs = new LocalCacheDirs(new Map(), new Map([[0, dir]]));
    const d = digestOf(Buffer.from('expected'));
    await expect(dirs.write({ export: 0, digest: d, data: Buffer.from('other'), eof: true, index: false, size: 0, tag: '' })).rejects.toThrow(`blob ${d} arrived as`);
    expect(await fsp.readdir(path.join(dir, 'blobs', 'sha256'))).toEqual([]);
    await expect(dirs.write({ export: 0, digest: '../../etc/passwd', data: Buffer.alloc(0), eof: true, index: false, size: 0, tag: '' })).rejects.toThrow('is not a digest');
    await expect(dirs.write({ export: 1, digest: d, data: Buffer.alloc(0), eof: true, index: false, size: 0, tag: '' })).rejects.toThrow('--export-cache 2 is not type=local');
  });

  test('answers only index.json and blobs/sha256/<hex> of a src, and says when one is missing', async () => {
    const blob = Buffer.from('cached');
    await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'blobs', 'sha256', digestOf(blob).slice(7)), blob);
    const dirs = new LocalCacheDirs(new Map([[0, dir]]), new Map());
    const got: Array<{ data: Buffer; eof: boolean; error: string }> = [];
    const send = async (m: { id: number; data: Buffer; eof: boolean; error: string }): Promise<void> => {
      got.push(m);
    };
    await dirs.answer(1, 0, digestOf(blob), send);
    expect(Buffer.concat(got.map((m) => m.data))).toEqual(blob);
    expect(got[got.length - 1].eof).toBe(true);
    got.length = 0;
    await dirs.answer(2, 0, '../../etc/passwd', send);
    expect(got).toEqual([expect.objectContaining({ error: expect.stringContaining('no blob ../../etc/passwd') })]);
    got.length = 0;
    await dirs.answer(3, 0, '', send);
    expect(got[0].error).toMatch(/index\.json: not found/);
  });
});
