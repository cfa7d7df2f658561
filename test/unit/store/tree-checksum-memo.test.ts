import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TreeChecksumMemo } from '../../../store/tree-checksum-memo';

describe('TreeChecksumMemo', () => {
  let tmp: string;
  let kept: string;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'tree-memo-'));
    kept = path.join(tmp, 'locals');
    await fsp.mkdir(path.join(kept, 'k1', 'gen-1', 'tree'), { recursive: true });
  });
  afterEach(() => fsp.rm(tmp, { recursive: true, force: true }));

  const counting = (): { calls: number; compute: () => Promise<string> } => {
    const c = { calls: 0, compute: async (): Promise<string> => `sha256:${++c.calls}` };
    return c;
  };

  it('computes a kept tree once per selection, and again for another selection', async () => {
    const memo = new TreeChecksumMemo(kept);
    const tree = path.join(kept, 'k1', 'gen-1', 'tree');
    const c = counting();
    expect(await memo.checksum(tree, { patterns: ['.'] }, c.compute)).toBe('sha256:1');
    expect(await memo.checksum(tree, { patterns: ['.'] }, c.compute)).toBe('sha256:1');
    expect(await memo.checksum(`${tree}/`, { patterns: ['.'] }, c.compute)).toBe('sha256:1');
    expect(await memo.checksum(tree, { patterns: ['src'] }, c.compute)).toBe('sha256:2');
    expect(await memo.checksum(tree, { patterns: ['.'], exclude: ['*.md'] }, c.compute)).toBe('sha256:3');
    expect(c.calls).toBe(3);
  });

  it('never remembers a tree outside the kept dir (a per-build session dir, a snapshot view)', async () => {
    const memo = new TreeChecksumMemo(kept);
    const other = path.join(tmp, 'sessions', 'b1', 'context');
    await fsp.mkdir(other, { recursive: true });
    const c = counting();
    await memo.checksum(other, { patterns: ['.'] }, c.compute);
    await memo.checksum(other, { patterns: ['.'] }, c.compute);
    await memo.checksum(kept, { patterns: ['.'] }, c.compute);
    await memo.checksum(kept, { patterns: ['.'] }, c.compute);
    await memo.checksum(path.join(kept, '..', 'elsewhere'), { patterns: ['.'] }, c.compute);
    expect(c.calls).toBe(5);
  });

  it('computes anew for a tree made again at the same path (a pruned key sent again)', async () => {
    const memo = new TreeChecksumMemo(kept);
    const tree = path.join(kept, 'k1', 'gen-1', 'tree');
    const c = counting();
    await memo.checksum(tree, { patterns: ['.'] }, c.compute);
    const before = await fsp.stat(tree, { bigint: true });
    await fsp.rm(tree, { recursive: true });
    // a new directory gets a new inode or at least a new birth time; wait until the clock says so
    let after = before;
    while (after.ino === before.ino && after.birthtimeNs === before.birthtimeNs) {
      await fsp.rm(tree, { recursive: true, force: true });
      await fsp.mkdir(tree);
      after = await fsp.stat(tree, { bigint: true });
    }
    expect(await memo.checksum(tree, { patterns: ['.'] }, c.compute)).toBe('sha256:2');
  });

  it('keeps at most its bound, dropping the least recently used', async () => {
    const memo = new TreeChecksumMemo(kept, 2);
    const tree = path.join(kept, 'k1', 'gen-1', 'tree');
    const c = counting();
    await memo.checksum(tree, 'a', c.compute); // 1
    await memo.checksum(tree, 'b', c.compute); // 2
    await memo.checksum(tree, 'a', c.compute); // hit: a is now the most recent
    await memo.checksum(tree, 'c', c.compute); // 3, drops b
    await memo.checksum(tree, 'a', c.compute); // hit
    await memo.checksum(tree, 'b', c.compute); // 4
    expect(c.calls).toBe(4);
  });

  it('does not remember a failed computation', async () => {
    const memo = new TreeChecksumMemo(kept);
    const tree = path.join(kept, 'k1', 'gen-1', 'tree');
    await expect(memo.checksum(tree, 'x', () => Promise.reject(new Error('not found')))).rejects.toThrow('not found');
    expect(await memo.checksum(tree, 'x', async () => 'sha256:ok')).toBe('sha256:ok');
  });
});
