import { setAttribute } from '@napi-rs/xattr';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { checksumPaths } from '../../../store/content-checksum';

/**
 * A fixed tree whose checksums were computed by checksumPaths before digests were cached and
 * files hashed concurrently (commit 84c21ff). Cache keys are stored in build caches: a change
 * to how a checksum is computed would silently invalidate every cache that exists, so these
 * values must never change.
 */
function makeFixedTree(root: string): void {
  const file = (rel: string, content: string | Buffer, mode: number): void => {
    writeFileSync(path.join(root, rel), content);
    chmodSync(path.join(root, rel), mode);
  };
  const dir = (rel: string, mode: number): void => {
    mkdirSync(path.join(root, rel));
    chmodSync(path.join(root, rel), mode);
  };
  file('readme.txt', 'hello\n', 0o644);
  file('notes.txt', '', 0o600);
  file('run.sh', '#!/bin/sh\necho hi\n', 0o755);
  dir('src', 0o755);
  dir('src/lib', 0o700);
  file('src/main.c', 'int main(void) { return 0; }\n', 0o644);
  file('src/lib/util.c', 'int util(void) { return 1; }\n', 0o640);
  file('src/lib/skip.txt', 'not in an excluded copy\n', 0o644);
  // larger than one read chunk (64 KiB), so more than one read per file
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 8)) & 0xff;
  file('src/big.bin', big, 0o644);
  symlinkSync('main.c', path.join(root, 'src/link-to-main'));
  symlinkSync('../readme.txt', path.join(root, 'src/lib/up'));
  dir('src/empty', 0o755);
  file('src/tagged', 'with an attribute\n', 0o644);
  // times are not part of a checksum: a far-off mtime must not matter
  utimesSync(path.join(root, 'src/main.c'), 1_000_000, 1_000_000);
}

describe('checksumPaths values are pinned', () => {
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'cksum-pinned-'));
    makeFixedTree(root);
    await setAttribute(path.join(root, 'src/tagged'), 'user.note', Buffer.from('kept'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test.each([
    ['the whole tree', ['.'], {}, 'sha256:11b376a27468a3aa8e0c5b29ee1b8dcd70380fff6b1f6867304b0795ae5bc30f'],
    ['a directory and a glob', ['src', '*.txt'], {}, 'sha256:0ecba804798cffc7d3f5df3979bf09e5cb4b697b078a84d46c64be57f53e376f'],
    ['single files', ['readme.txt', 'src/big.bin', 'src/tagged'], {}, 'sha256:4db14eaaee116868afe1eb6663337ec3d4a7bd2f2d0287b01a613dda3bcbcfa8'],
    ['a directory with --exclude', ['src'], { exclude: ['**/*.txt', 'big.bin'] }, 'sha256:c0099a77dc2800d4db7999e2eeca8c84dfcf46898a2e415a5da490aa354c902b'],
    ['--parents', ['src/./lib/*.c', 'run.sh'], { parents: true }, 'sha256:da3fba6f64252e3d007fa5805a82cfd0492916f307535d98cc42fcd9567f57f1'],
  ])('%s', async (_what, patterns, selection, expected) => {
    expect(await checksumPaths(root, patterns, undefined, selection)).toBe(expected);
  });
});
