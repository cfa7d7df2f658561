import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { flattenImage } from '../../conformance/harness/flatten-image';
import { compareImages, formatDifference, type Difference } from '../../conformance/harness/image-compare';
import { xattrText } from '../../conformance/harness/xattr-text';
import { writeDockerArchive, writeOciLayout, type LayerEntry, type TestImage } from './image-fixtures';

let tmp: string;
let n = 0;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-imgcmp-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const docker = (img: TestImage): Promise<string> => writeDockerArchive(path.join(tmp, `d${n++}.tar`), img);
const oci = (img: TestImage, nested?: TestImage): Promise<string> => writeOciLayout(path.join(tmp, `o${n++}.tar`), img, nested);

const BASE: LayerEntry[] = [
  { name: './', type: 'directory' },
  { name: 'bin/', type: 'directory' },
  { name: 'bin/tool', body: 'tool', mode: 0o755 },
  { name: 'bin/alias', type: 'symlink', linkname: 'tool', mode: 0o777 },
  { name: 'etc/', type: 'directory' },
  { name: 'etc/conf', body: 'a=1\n' },
  { name: 'tmp/', type: 'directory', mode: 0o1777 },
];
const CONFIG = { config: { Env: ['PATH=/bin'], Cmd: ['sh'] }, history: [{ created_by: 'base', empty_layer: false }, { created_by: 'CMD ["sh"]', empty_layer: true }] };
const image = (top: LayerEntry[] = [], config: Record<string, unknown> = CONFIG): TestImage => ({ layers: [BASE, top], config });
const kinds = (ds: Difference[]): string[] => ds.map((d) => `${d.kind} ${'path' in d ? d.path : 'key' in d ? d.key : d.index}`);

describe('flattenImage', () => {
  test('reads a docker archive and an OCI layout alike, with gzip, zstd and plain layers', async () => {
    const want = await flattenImage(await docker(image()));
    for (const compression of ['gzip', 'zstd', 'none'] as const) {
      expect(await flattenImage(await oci({ ...image(), compression }))).toEqual(want);
    }
    expect(want.files).toEqual({
      '.': { type: 'dir', mode: '0o755', uid: 0, gid: 0 },
      bin: { type: 'dir', mode: '0o755', uid: 0, gid: 0 },
      'bin/tool': { type: 'file', mode: '0o755', uid: 0, gid: 0, size: 4, sha256: sha('tool') },
      'bin/alias': { type: 'symlink', mode: '0o777', uid: 0, gid: 0, target: 'tool' },
      etc: { type: 'dir', mode: '0o755', uid: 0, gid: 0 },
      'etc/conf': { type: 'file', mode: '0o644', uid: 0, gid: 0, size: 4, sha256: sha('a=1\n') },
      tmp: { type: 'dir', mode: '0o1777', uid: 0, gid: 0 },
    });
    expect(want.config).toEqual({ Env: ['PATH=/bin'], Cmd: ['sh'], architecture: 'amd64', os: 'linux' });
    expect(want.history).toEqual([{ created_by: 'base', empty_layer: false }, { created_by: 'CMD ["sh"]', empty_layer: true }]);
  });

  test('applies whiteouts of a layer to the layers below it, then its own entries', async () => {
    const flat = await flattenImage(await oci({ layers: [
      BASE,
      [{ name: 'd/', type: 'directory' }, { name: 'd/a', body: 'a' }, { name: 'd/sub/', type: 'directory' }, { name: 'd/sub/b', body: 'b' }, { name: 'o/', type: 'directory' }, { name: 'o/old', body: 'old' }],
      // removes d/sub with all below it and etc/conf, empties o/ but keeps what this layer puts there,
      // and puts a new etc/conf: a whiteout acts before the entries of its own layer
      [{ name: 'd/.wh.sub' }, { name: 'etc/.wh.conf' }, { name: 'etc/conf', body: 'new' }, { name: 'o/.wh..wh..opq' }, { name: 'o/new', body: 'new' }],
    ], compression: 'gzip' }));
    expect(Object.keys(flat.files).filter((p) => /^(d|o|etc)(\/|$)/.test(p))).toEqual(['d', 'd/a', 'etc', 'etc/conf', 'o', 'o/new']);
    expect(flat.files['etc/conf']).toMatchObject({ sha256: sha('new') });
  });

  test('gives a hard link its target\'s content and a file set over a directory removes what was below it', async () => {
    const flat = await flattenImage(await docker({ layers: [
      [...BASE, { name: 'bin/hard', type: 'link', linkname: 'bin/tool', mode: 0o755 }, { name: 'x/', type: 'directory' }, { name: 'x/inner', body: 'i' }],
      [{ name: 'x', body: 'now a file' }],
    ] }));
    expect(flat.files['bin/hard']).toEqual({ type: 'file', mode: '0o755', uid: 0, gid: 0, size: 4, sha256: sha('tool') });
    expect(flat.files['x']).toMatchObject({ type: 'file' });
    expect(flat.files['x/inner']).toBeUndefined();
  });

  test('takes the linux/amd64 image of a nested index', async () => {
    const arm: TestImage = { layers: [[{ name: 'arm', body: 'arm' }]], config: { architecture: 'arm64' } };
    const flat = await flattenImage(await oci(image(), arm));
    expect(flat.files['bin/tool']).toBeDefined();
    expect(flat.files['arm']).toBeUndefined();
    expect(flat.config['architecture']).toBe('amd64');
  });

  test('keeps extended attributes, a binary value byte for byte (non-UTF-8 bytes as lone surrogates)', async () => {
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00]);
    const flat = await flattenImage(await oci({ layers: [[{ name: 'f', body: 'x', xattrs: { 'security.capability': cap, 'user.note': Buffer.from('héllo') } }]] }));
    expect(flat.files['f'].xattrs).toEqual({ 'security.capability': '\u0001\u0000\u0000\u0002\udc80 \u0000\u0000', 'user.note': 'héllo' });
  });
});

describe('xattrText', () => {
  test('decodes UTF-8 and escapes every other byte as Python\'s surrogateescape does', () => {
    expect(xattrText(Buffer.from('plain ü €'))).toBe('plain ü €');
    expect(xattrText(Buffer.from([0x41, 0xff, 0xc3, 0x41, 0xe2, 0x82]))).toBe('A\udcff\udcc3A\udce2\udc82');
    expect(xattrText(Buffer.from([0xed, 0xa0, 0x80]))).toBe('\udced\udca0\udc80'); // an encoded surrogate is no UTF-8
  });
});

describe('compareImages', () => {
  test('finds nothing between the same image as a docker archive and as an OCI layout', async () => {
    expect(await compareImages(await docker(image()), await oci({ ...image(), compression: 'zstd' }))).toEqual([]);
  });

  test('finds a changed content, mode, owner, symlink target and extended attribute', async () => {
    const ref = await docker(image([{ name: 'a', body: 'one' }, { name: 'b', body: 'b', mode: 0o644 }, { name: 'c', body: 'c', uid: 1, gid: 2 }, { name: 'l', type: 'symlink', linkname: 'a' }, { name: 'x', body: 'x', xattrs: { 'user.k': Buffer.from('v') } }]));
    const cand = await oci(image([{ name: 'a', body: 'two' }, { name: 'b', body: 'b', mode: 0o600 }, { name: 'c', body: 'c', uid: 1, gid: 3 }, { name: 'l', type: 'symlink', linkname: 'b' }, { name: 'x', body: 'x', xattrs: { 'user.k': Buffer.from('w') } }]));
    const diffs = await compareImages(ref, cand);
    expect(kinds(diffs)).toEqual(['differs a', 'differs b', 'differs c', 'differs l', 'differs x']);
    expect(diffs.map(formatDifference)).toEqual([
      `differs  /a  sha256: reference="${sha('one')}" candidate="${sha('two')}"`,
      'differs  /b  mode: reference="0o644" candidate="0o600"',
      'differs  /c  gid: reference=2 candidate=3',
      'differs  /l  target: reference="a" candidate="b"',
      'differs  /x  xattrs: reference={"user.k":"v"} candidate={"user.k":"w"}',
    ]);
  });

  test('finds a path one image lacks, a type that changed and a whiteout one builder left out', async () => {
    const ref = await docker({ layers: [BASE, [{ name: 'etc/.wh.conf' }, { name: 'only-ref', body: '' }, { name: 'kind', type: 'directory' }]], config: CONFIG });
    const cand = await oci({ layers: [BASE, [{ name: 'only-cand', body: '' }, { name: 'kind', type: 'fifo' }]], config: CONFIG });
    expect(kinds(await compareImages(ref, cand))).toEqual(['extra etc/conf', 'differs kind', 'extra only-cand', 'missing only-ref']);
  });

  test('compares runtime stubs (/etc/hosts, /proc, /dev, ...) only where both images have them', async () => {
    const ref = await docker(image([{ name: 'etc/hosts', body: '' }, { name: 'proc/', type: 'directory' }, { name: 'dev/null', type: 'character-device', mode: 0o666 }]));
    const cand = await oci(image([{ name: 'etc/hostname', body: '' }]));
    expect(await compareImages(ref, cand)).toEqual([]);
    const cand2 = await oci(image([{ name: 'etc/hosts', body: 'x' }]));
    expect(kinds(await compareImages(ref, cand2))).toEqual(['differs etc/hosts']);
  });

  test('finds config keys and the platform that differ; an empty value counts as absent', async () => {
    const ref = await docker(image([], { ...CONFIG, config: { ...CONFIG.config, Volumes: {}, Entrypoint: null, User: '1:1', Labels: { a: '1', b: '2' }, Hostname: 'ignored' } }));
    const same = await oci(image([], { ...CONFIG, config: { ...CONFIG.config, User: '1:1', Labels: { b: '2', a: '1' }, Hostname: 'other' } }));
    expect(await compareImages(ref, same)).toEqual([]);
    const cand = await oci(image([], { ...CONFIG, architecture: 'arm64', variant: 'v8', config: { ...CONFIG.config, Env: ['PATH=/usr/bin'], User: '', WorkingDir: '/w', Labels: { a: '1', b: '3' } } }));
    const diffs = await compareImages(ref, cand);
    expect(kinds(diffs)).toEqual(['config Env', 'config Labels', 'config User', 'config WorkingDir', 'config architecture', 'config variant']);
    expect(formatDifference(diffs[2])).toBe('config   User  reference="1:1" candidate=(none)');
  });

  test('finds history entries whose command or empty_layer differ, and one more or fewer', async () => {
    const cand = await oci(image([], { ...CONFIG, history: [{ created_by: 'base', empty_layer: false, created: '2020-01-01T00:00:00Z', comment: 'times and comments do not count' }, { created_by: 'CMD ["sh"]' }, { created_by: 'LABEL x=1', empty_layer: true }] }));
    const diffs = await compareImages(await docker(image()), cand);
    expect(kinds(diffs)).toEqual(['history 1', 'history 2']);
    expect(diffs.map(formatDifference)).toEqual([
      'history  [1]  reference={"created_by":"CMD [\\"sh\\"]","empty_layer":true} candidate={"created_by":"CMD [\\"sh\\"]","empty_layer":false}',
      'history  [2]  reference=(none) candidate={"created_by":"LABEL x=1","empty_layer":true}',
    ]);
  });

  test('fails with the reason on an archive that is no image', async () => {
    await fsp.writeFile(path.join(tmp, 'empty.tar'), Buffer.alloc(1024));
    await expect(compareImages(await oci(image()), path.join(tmp, 'empty.tar'))).rejects.toThrow(/^Cannot read .*empty\.tar: it is neither an OCI image layout nor a docker archive$/);
  });
});
