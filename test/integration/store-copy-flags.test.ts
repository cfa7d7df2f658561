import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CopyAction } from '../../solver/op';
import { checksumPaths } from '../../store/content-checksum';
import { FileMode } from '../../store/file-mode';
import { copyAction, mkfileAction } from '../../store/fs-copy';
import { fsTable } from '../helpers/fs-table';

let tmp: string;
let ctx: string;

async function write(p: string, body: string, mode = 0o644): Promise<void> {
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, body);
  await fsp.chmod(p, mode);
}

async function freshDest(): Promise<string> {
  const dest = await fsp.mkdtemp(path.join(tmp, 'dest-'));
  await write(path.join(dest, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await write(path.join(dest, 'etc/group'), 'root:x:0:\n');
  return dest;
}

function table(dir: string): Promise<Record<string, string>> {
  return fsTable(dir);
}

function copy(dest: string, srcPaths: string[], to: string, extra: Partial<CopyAction> = {}): Promise<void> {
  return copyAction({ type: 'copy', src: 0, srcPaths, dest: to, ...extra }, ctx, dest, { tmpDir: tmp });
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-flags-'));
  ctx = path.join(tmp, 'ctx');
  await write(path.join(ctx, 'run.sh'), 'echo\n', 0o755);
  await write(path.join(ctx, 'data.txt'), 'd\n', 0o640);
  await write(path.join(ctx, 'src/a.go'), 'a\n');
  await write(path.join(ctx, 'src/b.txt'), 'b\n');
  await write(path.join(ctx, 'src/keep.md'), 'k\n');
  await write(path.join(ctx, 'src/deep/c.go'), 'c\n');
  await write(path.join(ctx, 'src/deep/d.txt'), 'd\n');
  await write(path.join(ctx, 'a/b/file.txt'), 'f\n');
  await write(path.join(ctx, 'a/b/other.txt'), 'o\n');
  await write(path.join(ctx, 'x/one/y'), '1\n');
  await write(path.join(ctx, 'x/two/y/z'), '2\n');
  await write(path.join(ctx, 'x/three/n'), '3\n');
  await fsp.chmod(path.join(ctx, 'a'), 0o750);
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('symbolic --chmod (BSD setmode with umask 0, as dchapes-mode)', () => {
  const cases: Array<[string, number, boolean, number]> = [
    ['u+x', 0o644, false, 0o744],
    ['go-w', 0o666, false, 0o644],
    ['a=r,u+w', 0o777, false, 0o644],
    ['+x', 0o644, false, 0o755],
    ['+X', 0o644, false, 0o644],
    ['+X', 0o644, true, 0o755],
    ['+X', 0o744, false, 0o755],
    ['a-X', 0o755, false, 0o755],
    ['u=rwx,g=rx,o=', 0o600, false, 0o750],
    ['o=', 0o777, false, 0o770],
    ['g=u', 0o740, false, 0o770],
    ['u+s', 0o755, false, 0o4755],
    ['+t', 0o755, true, 0o1755],
    ['=', 0o4755, false, 0],
    ['u+x-w', 0o644, false, 0o544],
  ];
  test.each(cases)('%s on %o (dir %s) gives %o', (spec, from, isDir, want) => {
    expect(FileMode.parse(spec).apply(from, isDir).toString(8)).toBe(want.toString(8));
  });

  test('octal strings and numbers replace the mode', () => {
    expect(FileMode.parse('0755').apply(0o600, false)).toBe(0o755);
    expect(FileMode.parse(0o4711).apply(0o600, false)).toBe(0o4711);
  });

  test('invalid modes are invalid-argument errors', () => {
    expect(() => FileMode.parse('u+q')).toThrow(/Cannot parse chmod/);
    expect(() => FileMode.parse('17777')).toThrow(/Cannot parse chmod/);
  });

  test('applies to copied files and directories, not to directories COPY creates', async () => {
    const dest = await freshDest();
    await copy(dest, ['src'], '/out/', { chmod: 'go-r,u+x' });
    await copy(dest, ['run.sh', 'data.txt'], '/bin2/', { chmod: 'a+X' });
    const t = await table(dest);
    expect(t['out']).toBe('dir 755 0:0');
    expect(t['out/a.go']).toBe('file 700 0:0');
    expect(t['out/deep']).toBe('dir 711 0:0');
    expect(t['bin2/run.sh']).toBe('file 755 0:0');
    expect(t['bin2/data.txt']).toBe('file 640 0:0');
  });
});

describe('--exclude', () => {
  test('patterns apply below each matched directory, * within one level; excluded entries are not copied', async () => {
    const dest = await freshDest();
    await copy(dest, ['src'], '/o/', { exclude: ['*.txt', 'deep/*.go'] });
    expect(Object.keys(await table(path.join(dest, 'o')))).toEqual(['a.go', 'deep', 'deep/d.txt', 'keep.md']);
  });

  test('** and ! re-inclusion', async () => {
    const dest = await freshDest();
    await copy(dest, ['src'], '/o/', { exclude: ['**/*.go', '**/*.txt', '!deep/d.txt'] });
    expect(Object.keys(await table(path.join(dest, 'o')))).toEqual(['deep', 'deep/d.txt', 'keep.md']);
  });

  test('an excluded directory is left out whole', async () => {
    const dest = await freshDest();
    await copy(dest, ['.'], '/o/', { exclude: ['src', 'x', 'a/b/other*'] });
    expect(Object.keys(await table(path.join(dest, 'o')))).toEqual(['a', 'a/b', 'a/b/file.txt', 'data.txt', 'run.sh']);
  });

  test('the content checksum ignores changes to excluded files only', async () => {
    const before = await checksumPaths(ctx, ['src'], undefined, { exclude: ['*.txt'] });
    await fsp.writeFile(path.join(ctx, 'src/b.txt'), 'changed\n');
    expect(await checksumPaths(ctx, ['src'], undefined, { exclude: ['*.txt'] })).toBe(before);
    await fsp.writeFile(path.join(ctx, 'src/a.go'), 'changed\n');
    expect(await checksumPaths(ctx, ['src'], undefined, { exclude: ['*.txt'] })).not.toBe(before);
    await fsp.writeFile(path.join(ctx, 'src/a.go'), 'a\n');
    await fsp.writeFile(path.join(ctx, 'src/b.txt'), 'b\n');
  });

  test('the content checksum follows a re-included file and ignores the excluded ones', async () => {
    const sel = { exclude: ['**/*.txt', '!deep/d.txt'] };
    const before = await checksumPaths(ctx, ['src'], undefined, sel);
    await fsp.writeFile(path.join(ctx, 'src/b.txt'), 'changed\n');
    expect(await checksumPaths(ctx, ['src'], undefined, sel)).toBe(before);
    await fsp.writeFile(path.join(ctx, 'src/deep/d.txt'), 'changed\n');
    expect(await checksumPaths(ctx, ['src'], undefined, sel)).not.toBe(before);
    await fsp.writeFile(path.join(ctx, 'src/deep/d.txt'), 'd\n');
    await fsp.writeFile(path.join(ctx, 'src/b.txt'), 'b\n');
  });
});

describe('--parents', () => {
  test('keeps the path of each match under dest; parents take the source mode', async () => {
    const dest = await freshDest();
    await copy(dest, ['a/b/file.txt', 'x/*/y'], '/p/', { parents: true });
    expect(await table(path.join(dest, 'p'))).toEqual({
      a: 'dir 750 0:0',
      'a/b': 'dir 755 0:0',
      'a/b/file.txt': 'file 644 0:0',
      x: 'dir 755 0:0',
      'x/one': 'dir 755 0:0',
      'x/one/y': 'file 644 0:0',
      'x/two': 'dir 755 0:0',
      'x/two/y': 'dir 755 0:0',
      'x/two/y/z': 'file 644 0:0',
    });
  });

  test('the /./ marker pivots: only the part after it is kept', async () => {
    const dest = await freshDest();
    await copy(dest, ['a/./b/file.txt', 'x/./*/n'], '/p/', { parents: true });
    expect(Object.keys(await table(path.join(dest, 'p')))).toEqual(['b', 'b/file.txt', 'three', 'three/n']);
  });

  test('a missing plain path is not-found; a wildcard matching nothing copies nothing', async () => {
    const dest = await freshDest();
    await expect(copy(dest, ['a/missing.txt'], '/p/', { parents: true })).rejects.toThrow(/not found/);
    await copy(dest, ['nothing/*'], '/q/', { parents: true });
    expect(await table(path.join(dest, 'q'))).toEqual({});
  });

  test('the content checksum covers what is copied below the pivot, and the parents it creates', async () => {
    const sel = { parents: true };
    const key = (): Promise<string> => checksumPaths(ctx, ['a/./b/file.txt'], undefined, sel);
    const before = await key();
    // Outside the include pattern, or the pivot itself (never copied): the key stays.
    await fsp.writeFile(path.join(ctx, 'a/b/other.txt'), 'changed\n');
    await fsp.chmod(path.join(ctx, 'a'), 0o700);
    expect(await key()).toBe(before);
    // The parent the copy creates takes its source mode, so its mode is part of the key.
    await fsp.chmod(path.join(ctx, 'a/b'), 0o700);
    expect(await key()).not.toBe(before);
    await fsp.chmod(path.join(ctx, 'a/b'), 0o755);
    expect(await key()).toBe(before);
    await fsp.writeFile(path.join(ctx, 'a/b/file.txt'), 'changed\n');
    expect(await key()).not.toBe(before);
    await fsp.writeFile(path.join(ctx, 'a/b/file.txt'), 'f\n');
    await fsp.writeFile(path.join(ctx, 'a/b/other.txt'), 'o\n');
    await fsp.chmod(path.join(ctx, 'a'), 0o750);
  });

  test('a plain pivot that is missing is not-found for the copy and for its checksum alike', async () => {
    const dest = await freshDest();
    await expect(copy(dest, ['missing/./*.txt'], '/p/', { parents: true })).rejects.toThrow('Cannot copy "missing/./*.txt": not found in the source');
    await expect(checksumPaths(ctx, ['missing/./*.txt'], undefined, { parents: true })).rejects.toThrow(/not found in the build context/);
  });
});

describe('--link', () => {
  test('a symlink at the destination is replaced, not followed', async () => {
    const dest = await freshDest();
    await fsp.mkdir(path.join(dest, 'real'));
    await fsp.symlink('/real', path.join(dest, 'via'));
    await copy(dest, ['data.txt'], '/via/', { link: true });
    expect((await fsp.lstat(path.join(dest, 'via'))).isDirectory()).toBe(true);
    expect(await fsp.readdir(path.join(dest, 'real'))).toEqual([]);
    expect(await fsp.readFile(path.join(dest, 'via/data.txt'), 'utf8')).toBe('d\n');
  });

  test('a file dest without / becomes a file even over an existing directory', async () => {
    const dest = await freshDest();
    await fsp.mkdir(path.join(dest, 'target'));
    await copy(dest, ['data.txt'], '/target', { link: true });
    expect((await fsp.lstat(path.join(dest, 'target'))).isFile()).toBe(true);
  });

  test('parent directories take the defaults of a copy onto scratch (0755, the --chown user)', async () => {
    const dest = await freshDest();
    await fsp.mkdir(path.join(dest, 'usr/local'), { recursive: true, mode: 0o700 });
    await fsp.chmod(path.join(dest, 'usr/local'), 0o700);
    await copy(dest, ['run.sh'], '/usr/local/bin/', { link: true, chown: { user: '1000', group: '1000' } });
    const t = await table(path.join(dest, 'usr'));
    expect(t).toEqual({ local: 'dir 755 1000:1000', 'local/bin': 'dir 755 1000:1000', 'local/bin/run.sh': 'file 755 1000:1000' });
  });
});

describe('mkfile', () => {
  test('writes data with mode under umask 022 and the owner', async () => {
    const dest = await freshDest();
    await mkfileAction({ type: 'mkfile', path: '/etc/hello', data: 'hi\n', mode: 0o777, chown: { user: '7', group: '8' } }, dest);
    expect((await table(dest))['etc/hello']).toBe('file 755 7:8');
    expect(await fsp.readFile(path.join(dest, 'etc/hello'), 'utf8')).toBe('hi\n');
    await expect(mkfileAction({ type: 'mkfile', path: '/no/dir/f', data: '', mode: 0o644 }, dest)).rejects.toThrow(/parent does not exist/);
  });
});
