import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { checksumPaths } from '../../../store/content-checksum';
import { expandGlob } from '../../../store/path-glob';

describe('checksumPaths', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'cksum-'));
    writeFileSync(path.join(root, 'one.txt'), 'one\n');
    writeFileSync(path.join(root, 'two.txt'), 'two\n');
    mkdirSync(path.join(root, 'conf/sub'), { recursive: true });
    writeFileSync(path.join(root, 'conf/app.ini'), 'a=1\n');
    writeFileSync(path.join(root, 'conf/sub/deep.ini'), 'b=2\n');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('changes when a selected file changes and not when an unselected one does', async () => {
    const before = await checksumPaths(root, ['one.txt']);
    writeFileSync(path.join(root, 'two.txt'), 'changed\n');
    expect(await checksumPaths(root, ['one.txt'])).toBe(before);
    writeFileSync(path.join(root, 'one.txt'), 'changed\n');
    expect(await checksumPaths(root, ['one.txt'])).not.toBe(before);
  });

  test('covers files below a selected directory and their modes', async () => {
    const before = await checksumPaths(root, ['conf']);
    chmodSync(path.join(root, 'conf/sub/deep.ini'), 0o600);
    expect(await checksumPaths(root, ['conf'])).not.toBe(before);
  });

  test('a missing path is not found, a wildcard matching nothing selects nothing', async () => {
    await expect(checksumPaths(root, ['missing.md'])).rejects.toThrow('Cannot compute checksum of missing.md: not found in the build context');
    expect(await checksumPaths(root, ['*.md'])).toMatch(/^sha256:/);
  });

  test('a symlink to a host file is hashed as a link, never read through', async () => {
    symlinkSync('/etc/passwd', path.join(root, 'pw'));
    const a = await checksumPaths(root, ['conf']);
    expect(a).toMatch(/^sha256:/);
    // The link itself selected: followed inside the root, where /etc/passwd does not exist.
    await expect(checksumPaths(root, ['pw'])).rejects.toThrow(/not found/);
  });
});

describe('expandGlob', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'glob-'));
    for (const f of ['a.txt', 'b.txt', 'c.md']) writeFileSync(path.join(root, f), f);
    mkdirSync(path.join(root, 'd1'));
    writeFileSync(path.join(root, 'd1/x.txt'), 'x');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('matches per segment like Go filepath.Match', async () => {
    expect(await expandGlob(root, '*.txt')).toEqual(['a.txt', 'b.txt']);
    expect(await expandGlob(root, '?.md')).toEqual(['c.md']);
    expect(await expandGlob(root, '[ab].txt')).toEqual(['a.txt', 'b.txt']);
    expect(await expandGlob(root, 'd*/*.txt')).toEqual(['d1/x.txt']);
    expect(await expandGlob(root, './a.txt')).toEqual(['a.txt']);
    expect(await expandGlob(root, 'missing')).toEqual([]);
  });
});
