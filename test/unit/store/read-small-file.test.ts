import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readFileDigest } from '../../../store/content-checksum';
import { readSmallFileSync } from '../../../store/read-small-file';

describe('readSmallFileSync', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'read-small-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file whole, and one byte past the expected size of a file that grew', () => {
    const file = path.join(dir, 'f');
    writeFileSync(file, 'hello world');
    expect(readSmallFileSync(file, 11).toString()).toBe('hello world');
    expect(readSmallFileSync(file, 0).toString()).toBe('h');
    expect(readSmallFileSync(file, 5).toString()).toBe('hello ');
    expect(readSmallFileSync(file, 40).toString()).toBe('hello world');
  });

  it('does not follow a symlink unless asked to', () => {
    writeFileSync(path.join(dir, 'target'), 'secret');
    symlinkSync('target', path.join(dir, 'link'));
    expect(() => readSmallFileSync(path.join(dir, 'link'), 6)).toThrow(expect.objectContaining({ code: 'ELOOP' }));
    expect(readSmallFileSync(path.join(dir, 'link'), 6, true).toString()).toBe('secret');
  });
});

describe('readFileDigest of a small file', () => {
  it('hashes the whole file when it grew after its stat, not the first bytes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'read-small-'));
    try {
      const file = path.join(dir, 'f');
      writeFileSync(file, 'abc');
      const st = lstatSync(file);
      writeFileSync(file, 'abcdefghij');
      const want = createHash('sha256').update('abcdefghij').digest('hex');
      await expect(readFileDigest(file, st)).resolves.toBe(want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
