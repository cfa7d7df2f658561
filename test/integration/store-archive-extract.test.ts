import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { copyAction } from '../../store/fs-copy';
import { isArchive } from '../../store/archive-extract';
import { BuildError } from '../../solver/build-error';
import { OWN_CASES_DIR } from '../conformance/harness/case-dirs';
import { fsTable } from '../helpers/fs-table';

/**
 * Expected tables are what Docker 20.10's BuildKit produced for `ADD x.tar /eN/` of the same
 * archives (flattened with imgdiff.py): chrootarchive semantics, the destination is the root.
 */
let tmp: string;
let ctx: string;
/**
 * Names a hostile archive would write on the host if it escaped (/tmp/<name>, /etc/<name>,
 * /<name>): unique per run, so the test never touches a fixed host path and can check that
 * they are absent before and after.
 */
const unique = randomBytes(6).toString('hex');
const HOST_ESCAPES = {
  tmp: `buildd-evil2-${unique}`,
  etc: `buildd-evil-${unique}`,
  dangling: `buildd-nowhere-${unique}`,
};
const hostEscapePaths = [path.join('/tmp', HOST_ESCAPES.tmp), path.join('/etc', HOST_ESCAPES.etc), path.join('/', HOST_ESCAPES.dangling)];

async function absent(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
  );
}

interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  body?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

async function makeTar(file: string, entries: Entry[]): Promise<void> {
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(file));
  for (const e of entries) {
    pack.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: e.mode ?? 0o644, uid: e.uid ?? 1234, gid: e.gid ?? 5678, mtime: new Date(1_600_000_000_000) }, e.body ?? '');
  }
  pack.finalize();
  await written;
}

function table(dir: string): Promise<Record<string, string>> {
  return fsTable(dir, { content: true });
}

async function add(name: string, dest: string, chown?: string): Promise<string> {
  const root = await fsp.mkdtemp(path.join(tmp, 'root-'));
  await copyAction({ type: 'copy', src: 0, srcPaths: [name], dest, extract: true, chown: chown ? { user: chown.split(':')[0], group: chown.split(':')[1] } : undefined }, ctx, root);
  return root;
}

beforeAll(async () => {
  for (const p of hostEscapePaths) expect(await absent(p)).toBe(true);
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-archive-'));
  ctx = path.join(tmp, 'ctx');
  await fsp.mkdir(ctx);
  await makeTar(path.join(ctx, 'ok.tar'), [{ name: 'pkg/', type: 'directory', mode: 0o750, uid: 0, gid: 0 }, { name: 'pkg/lib.txt', body: 'lib\n', mode: 0o640, uid: 3, gid: 4 }]);
  for (const [tool, ext] of [['gzip', 'gz'], ['bzip2', 'bz2'], ['xz', 'xz']]) {
    await fsp.writeFile(path.join(ctx, `ok.tar.${ext}`), execFileSync(tool, ['-c', path.join(ctx, 'ok.tar')]));
  }
  await fsp.writeFile(path.join(ctx, 'plain.txt'), 'not a tar\n');
  await fsp.writeFile(path.join(ctx, 'notar.gz'), execFileSync('gzip', ['-c'], { input: 'plain text, not a tar' }));
  await fsp.writeFile(path.join(ctx, 'broken.xz'), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]));
  await fsp.writeFile(path.join(ctx, 'broken.gz'), Buffer.from([0x1f, 0x8b, 0x08, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  // Archives cut in half: the first tar header still decompresses, the rest does not.
  await makeTar(path.join(ctx, 'big.tar'), [{ name: 'first.txt', body: 'first\n' }, { name: 'blob.bin', body: randomBytes(256 * 1024).toString('base64') }]);
  for (const [tool, ext] of [['gzip', 'gz'], ['bzip2', 'bz2'], ['xz', 'xz']]) {
    const whole = execFileSync(tool, ['-c', path.join(ctx, 'big.tar')]);
    await fsp.writeFile(path.join(ctx, `cut.tar.${ext}`), whole.subarray(0, Math.floor(whole.length / 2)));
    const small = await fsp.readFile(path.join(ctx, `ok.tar.${ext}`));
    await fsp.writeFile(path.join(ctx, `cutsmall.tar.${ext}`), small.subarray(0, small.length - 20));
  }
  await makeTar(path.join(ctx, 'e1.tar'), [
    { name: '../../escape.txt', body: 'esc' },
    { name: '/abs.txt', body: 'abs' },
    { name: 'dir/sub/f', body: 'f', mode: 0o4755 },
    { name: 'dir/', type: 'directory', mode: 0o700 },
  ]);
  await makeTar(path.join(ctx, 'e2.tar'), [{ name: 'etc/', type: 'directory', mode: 0o755 }, { name: 'etclink', type: 'symlink', linkname: '/etc' }, { name: `etclink/${HOST_ESCAPES.etc}`, body: 'evil' }]);
  await makeTar(path.join(ctx, 'e3.tar'), [{ name: 'tmp/', type: 'directory', mode: 0o755 }, { name: 'rel', type: 'symlink', linkname: '../../../../tmp' }, { name: `rel/${HOST_ESCAPES.tmp}`, body: 'evil2' }]);
  await makeTar(path.join(ctx, 'e4.tar'), [{ name: 'etc/passwd', body: 'inner' }, { name: 'hard', type: 'link', linkname: '../../etc/passwd' }]);
  await makeTar(path.join(ctx, 'e5.tar'), [{ name: 'dangling', type: 'symlink', linkname: `/${HOST_ESCAPES.dangling}` }, { name: 'dangling/x', body: 'x' }]);
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
  for (const p of hostEscapePaths) expect(await absent(p)).toBe(true);
});

test.each(['ok.tar', 'ok.tar.gz', 'ok.tar.bz2', 'ok.tar.xz'])('%s is extracted with the archive modes and owners', async (name) => {
  expect(await isArchive(path.join(ctx, name))).toBe(true);
  const root = await add(name, '/opt/');
  expect(await table(path.join(root, 'opt'))).toEqual({ pkg: 'dir 750 0:0', 'pkg/lib.txt': 'file:lib\n 640 3:4' });
});

test('a destination without a trailing slash is still the directory extracted into', async () => {
  const root = await add('ok.tar.gz', '/opt');
  expect(Object.keys(await table(path.join(root, 'opt')))).toEqual(['pkg', 'pkg/lib.txt']);
});

test('files that are not tar archives are copied as they are', async () => {
  for (const name of ['plain.txt', 'notar.gz']) expect(await isArchive(path.join(ctx, name))).toBe(false);
  const root = await add('notar.gz', '/opt/');
  expect(Object.keys(await table(path.join(root, 'opt')))).toEqual(['notar.gz']);
  const plain = await add('plain.txt', '/opt/');
  expect(await table(path.join(plain, 'opt'))).toEqual({ 'plain.txt': 'file:not a tar\n 644 0:0' });
});

test('a compressed file that is not a tar and is damaged past its beginning is copied as it is, as BuildKit does (not read to its end)', async () => {
  // 64 KiB of text, gzip'd, then cut in the middle: the first tar header's worth decompresses
  // fine and is not a tar, so the file is not an archive; the cut further on is never reached.
  const whole = gzipSync(Buffer.from('not a tar, just text\n'.repeat(3000)));
  const name = `cut-text-${randomBytes(4).toString('hex')}.gz`;
  await fsp.writeFile(path.join(ctx, name), whole.subarray(0, Math.floor(whole.length / 2)));
  try {
    expect(await isArchive(path.join(ctx, name))).toBe(false);
    const root = await add(name, '/opt/');
    expect(Object.keys(await table(path.join(root, 'opt')))).toEqual([name]);
  } finally {
    await fsp.rm(path.join(ctx, name), { force: true });
  }
});

/** What ADD of `name` ends with: the BuildError it fails with (or a note that it did not fail). */
async function addFailure(name: string): Promise<BuildError | string> {
  return add(name, '/opt/').then(
    async (root) => `not failed, /opt holds ${JSON.stringify(Object.keys(await table(path.join(root, 'opt'))))}`,
    (err: unknown) => (err instanceof BuildError ? err : `not a BuildError: ${String(err)}`),
  );
}

describe('a compressed file that does not decompress fails the ADD, naming it (never copied as it is)', () => {
  test.each([
    ['cut.tar.gz', /: unexpected end of file$/],
    ['cut.tar.bz2', /: bzip2 -dc exited with code 2: bzip2: Compressed file ends unexpectedly;/],
    ['cut.tar.xz', /: xz -dc exited with code 1: xz: \(stdin\): Unexpected end of input$/],
    ['cutsmall.tar.gz', /: unexpected end of file$/],
    ['cutsmall.tar.bz2', /: bzip2 -dc exited with code 2: bzip2: Compressed file ends unexpectedly;/],
    ['cutsmall.tar.xz', /: xz -dc exited with code 1: xz: \(stdin\): Unexpected end of input$/],
  ])('%s, cut short after its first tar header', async (name, reason) => {
    const err = await addFailure(name);
    expect(err).toBeInstanceOf(BuildError);
    expect(err).toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(new RegExp(`^Cannot extract archive ${name.replace(/\./g, '\\.')}: `)) });
    expect((err as BuildError).message).toMatch(reason);
  });

  test.each([
    ['broken.xz', /^Cannot extract archive broken\.xz: xz -dc exited with code 1: xz: \(stdin\): Unexpected end of input$/],
    ['broken.gz', /^Cannot extract archive broken\.gz: unknown header flags set$/],
  ])('%s, damaged from its first bytes', async (name, message) => {
    const err = await addFailure(name);
    expect(err).toBeInstanceOf(BuildError);
    expect(err).toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(message) });
    await expect(isArchive(path.join(ctx, name))).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(message) });
  });
});

test('--chown owns the created destination but the extracted entries keep the archive owners, as the reference BuildKit does', async () => {
  const root = await add('ok.tar.xz', '/chowned', '7:8');
  expect(await table(root)).toMatchObject({ chowned: 'dir 755 7:8', 'chowned/pkg': 'dir 750 0:0', 'chowned/pkg/lib.txt': 'file:lib\n 640 3:4' });
});

describe('hostile archives stay inside the destination (as chrootarchive)', () => {
  let hostSentinel: string;
  beforeAll(async () => {
    hostSentinel = path.join(tmp, 'escape.txt');
  });

  test('../ and absolute names land below the destination', async () => {
    const root = await add('e1.tar', '/e1/');
    expect(await table(path.join(root, 'e1'))).toEqual({
      'abs.txt': 'file:abs 644 1234:5678',
      dir: 'dir 700 1234:5678',
      'dir/sub': 'dir 755 0:0',
      'dir/sub/f': 'file:f 4755 1234:5678',
      'escape.txt': 'file:esc 644 1234:5678',
    });
    await expect(fsp.lstat(hostSentinel)).rejects.toThrow(/ENOENT/);
    await expect(fsp.lstat(path.join(root, 'escape.txt'))).rejects.toThrow(/ENOENT/);
  });

  test('writes through an absolute symlink resolve inside the destination', async () => {
    const before = await fsp.readdir('/etc');
    const root = await add('e2.tar', '/e2/');
    expect(await table(path.join(root, 'e2'))).toEqual({ etc: 'dir 755 1234:5678', [`etc/${HOST_ESCAPES.etc}`]: 'file:evil 644 1234:5678', etclink: 'symlink->/etc 777 1234:5678' });
    expect(await absent(path.join('/etc', HOST_ESCAPES.etc))).toBe(true);
    expect(await fsp.readdir('/etc')).toEqual(before);
  });

  test('writes through a relative symlink that climbs out resolve inside the destination', async () => {
    const root = await add('e3.tar', '/e3/');
    expect(await table(path.join(root, 'e3'))).toEqual({ rel: 'symlink->../../../../tmp 777 1234:5678', tmp: 'dir 755 1234:5678', [`tmp/${HOST_ESCAPES.tmp}`]: 'file:evil2 644 1234:5678' });
    expect(await absent(path.join('/tmp', HOST_ESCAPES.tmp))).toBe(true);
  });

  test('a hard link climbing out links the file of that name inside the destination', async () => {
    const root = await add('e4.tar', '/e4/');
    const t = await table(path.join(root, 'e4'));
    expect(t).toEqual({ etc: 'dir 755 0:0', 'etc/passwd': 'file:inner 644 1234:5678', hard: 'file:inner 644 1234:5678' });
    expect((await fsp.stat(path.join(root, 'e4/hard'))).ino).toBe((await fsp.stat(path.join(root, 'e4/etc/passwd'))).ino);
    expect(await fsp.readFile('/etc/passwd', 'utf8')).not.toBe('inner');
  });

  test('a write through a dangling symlink fails, as in Docker', async () => {
    await expect(add('e5.tar', '/e5/')).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(/^Cannot extract archive entry "dangling\/x"/) });
    expect(await absent(path.join('/', HOST_ESCAPES.dangling))).toBe(true);
  });
});

test('the c37-add-gzip-archive case comes out as BuildKit made it', async () => {
  // A copy whose plain file has a mode no checkout gives it: ADD keeps the context file's mode.
  const caseDir = path.join(tmp, 'c37-case');
  await fsp.cp(path.join(OWN_CASES_DIR, 'c37-add-gzip-archive'), caseDir, { recursive: true });
  await fsp.chmod(path.join(caseDir, 'notes.txt'), 0o444);
  const root = await fsp.mkdtemp(path.join(tmp, 'c37-'));
  await copyAction({ type: 'copy', src: 0, srcPaths: ['bundle.tar.gz'], dest: '/srv/', extract: true }, caseDir, root);
  await copyAction({ type: 'copy', src: 0, srcPaths: ['notes.txt'], dest: '/srv/notes.txt', extract: true }, caseDir, root);
  // Docker 20.10's BuildKit (the case is `same` in conformance.test.ts): the archive's entries
  // with their modes under a created /srv 755 0:0, the plain file copied with its 444
  expect(await table(root)).toEqual({
    srv: 'dir 755 0:0',
    'srv/bundle': 'dir 755 0:0',
    'srv/bundle/bin': 'dir 750 0:0',
    'srv/bundle/bin/run': 'file:#!/bin/sh\necho run\n 755 0:0',
    'srv/bundle/current': 'symlink->data.txt 777 0:0',
    'srv/bundle/data.txt': 'file:data\n 644 0:0',
    'srv/notes.txt': 'file:notes, not an archive\n 444 0:0',
  });
});
