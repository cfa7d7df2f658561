import { createHash, type Hash } from 'node:crypto';
import { chmodSync, createReadStream, linkSync, mkdirSync, mkdtempSync, promises as fsp, renameSync, rmSync, type Stats, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { checksumPaths, readFileDigest, type ChecksumOptions, type ChecksumStats, type FileDigester } from '../../../store/content-checksum';
import { selectSources, walkSelected } from '../../../store/copy-selection';
import { FileDigestCache } from '../../../store/file-digest-cache';
import { readXattrs } from '../../../store/xattrs';

const T = 1_700_000_000;
/** a clock an hour ahead: every file made by a test is out of the cache's racy window */
const laterCache = (): FileDigestCache => new FileDigestCache({ now: () => Date.now() + 3_600_000 });
const zeroStats = (): ChecksumStats => ({ entries: 0, files: 0, reused: 0, read: 0, bytesRead: 0 });

/** checksumPaths as it was before digests were cached and files read concurrently (84c21ff). */
async function sequentialChecksum(root: string, patterns: string[], selection: { exclude?: string[]; parents?: boolean } = {}): Promise<string> {
  const hash = createHash('sha256');
  const notFound = (p: string): BuildError => new BuildError('not-found', `Cannot compute checksum of ${p}: not found in the build context`);
  const keyed = (name: string): boolean => name === 'security.capability' || !['security.', 'system.', 'com.apple.', 'trusted.overlay.'].some((p) => name.startsWith(p));
  const hashEntry = async (abs: string, rel: string, st: Stats, h: Hash): Promise<void> => {
    const perm = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) h.update(`link ${rel} ${perm} ${await fsp.readlink(abs)}\0`);
    else if (st.isDirectory()) h.update(`dir ${rel} ${perm}\0`);
    else if (st.isFile()) {
      const content = createHash('sha256');
      for await (const chunk of createReadStream(abs)) content.update(chunk as Buffer);
      h.update(`file ${rel} ${perm} ${st.size} ${content.digest('hex')}\0`);
    } else h.update(`other ${rel} ${perm} ${st.mode >>> 12} ${st.rdev}\0`);
    for (const [name, value] of await readXattrs(abs, keyed)) h.update(`xattr ${rel} ${name} ${value.toString('hex')}\0`);
  };
  for (const source of await selectSources(root, { srcPaths: patterns, ...selection }, notFound)) {
    const parents = source.parentsInclude === undefined ? '' : ` parents ${source.parentsInclude}`;
    hash.update(`match ${source.pattern}${parents} ${source.path}\0`);
    if (!source.stat.isDirectory()) {
      await hashEntry(source.hostPath, source.path, source.stat, hash);
      continue;
    }
    hash.update(`dir ${source.path}\0`);
    for await (const entry of walkSelected(source.hostPath, source.filter)) await hashEntry(entry.hostPath, `${source.path}/${entry.rel}`, entry.stat, hash);
  }
  return 'sha256:' + hash.digest('hex');
}

/** A deterministic pseudo-random source, so a failing tree can be made again from its seed. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s % n;
  };
}

/** Sizes around the reader's 256 KiB piece and its one-read small-file path. */
const SIZES = [0, 1, 7, 4095, 4096, 4097, 65536, 262143, 262144, 262145, 524288, 600_001];

function makeRandomTree(root: string, seed: number): void {
  const r = rng(seed);
  const dirs = [''];
  const count = 20 + r(60);
  for (let i = 0; i < count; i++) {
    const parent = dirs[r(dirs.length)];
    const name = path.join(parent, `${['a', 'b', 'c', 'x y', 'é'][r(5)]}${i}`);
    const kind = r(10);
    if (kind < 2) {
      mkdirSync(path.join(root, name));
      chmodSync(path.join(root, name), [0o755, 0o700, 0o750][r(3)]);
      dirs.push(name);
    } else if (kind < 3) {
      symlinkSync(['../a', 'missing', '/etc/passwd', '.'][r(4)], path.join(root, name));
    } else {
      const size = r(3) === 0 ? SIZES[r(SIZES.length)] : r(20_000);
      const buf = Buffer.alloc(size);
      for (let j = 0; j < size; j += 97) buf[j] = r(256);
      writeFileSync(path.join(root, `${name}.txt`), buf);
      chmodSync(path.join(root, `${name}.txt`), [0o644, 0o755, 0o600, 0o4755][r(4)]);
    }
  }
}

describe('checksumPaths with cached digests and concurrent reads', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'cksum-cc-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** A digester that counts the files it reads and how many reads run at once. */
  function countingDigester(): { digest: FileDigester; read: string[]; maxActive: () => number; active: () => number } {
    const read: string[] = [];
    let active = 0;
    let maxActive = 0;
    const digest: FileDigester = async (p, st, signal) => {
      read.push(p);
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        // finish out of order: a later file often ends before an earlier one
        for (let i = (read.length * 7919) % 13; i > 0; i--) await new Promise((r) => setImmediate(r));
        return await readFileDigest(p, st, signal);
      } finally {
        active--;
      }
    };
    return { digest, read, maxActive: () => maxActive, active: () => active };
  }

  function makeFlatTree(files: number): void {
    mkdirSync(path.join(root, 'src'));
    for (let i = 0; i < files; i++) writeFileSync(path.join(root, 'src', `f${i}`), `file ${i}\n`.repeat(i + 1));
  }

  test('a second checksum of an unchanged tree reads no file', async () => {
    makeFlatTree(40);
    const cache = laterCache();
    const first = countingDigester();
    const stats1 = zeroStats();
    const a = await checksumPaths(root, ['.'], undefined, {}, { cache, digestFile: first.digest, stats: stats1 });
    expect(first.read).toHaveLength(40);
    expect(stats1).toMatchObject({ files: 40, reused: 0, read: 40 });
    const second = countingDigester();
    const stats2 = zeroStats();
    const b = await checksumPaths(root, ['.'], undefined, {}, { cache, digestFile: second.digest, stats: stats2 });
    expect(b).toBe(a);
    expect(second.read).toHaveLength(0);
    expect(stats2).toMatchObject({ files: 40, reused: 40, read: 0, bytesRead: 0 });
    expect(cache.counters()).toMatchObject({ hits: 40, misses: 40, recorded: 40 });
  });

  test('a copy of the tree made of hardlinks reuses every digest and has the same checksum', async () => {
    makeFlatTree(10);
    const cache = laterCache();
    const a = await checksumPaths(root, ['src'], undefined, {}, { cache });
    const copy = path.join(root, 'copy', 'src');
    mkdirSync(copy, { recursive: true });
    for (let i = 0; i < 10; i++) linkSync(path.join(root, 'src', `f${i}`), path.join(copy, `f${i}`));
    const counting = countingDigester();
    expect(await checksumPaths(path.join(root, 'copy'), ['src'], undefined, {}, { cache, digestFile: counting.digest })).toBe(a);
    expect(counting.read).toHaveLength(0);
  });

  test('a file changed in size, mtime or content (new inode) is read again, and only that one', async () => {
    makeFlatTree(5);
    for (let i = 0; i < 5; i++) utimesSync(path.join(root, 'src', `f${i}`), T, T);
    const cache = laterCache();
    let previous = await checksumPaths(root, ['.'], undefined, {}, { cache });
    // times are not part of the checksum: an mtime alone makes a read, not a new checksum
    const changes: Array<[string, () => void, boolean]> = [
      ['size', () => writeFileSync(path.join(root, 'src/f1'), 'longer than before\n'), true],
      ['mtime', () => utimesSync(path.join(root, 'src/f2'), T + 1, T + 1), false],
      [
        'content in a new inode, same size and mtime',
        () => {
          const f = path.join(root, 'src/f3');
          const before = statSync(f);
          writeFileSync(`${f}.new`, Buffer.alloc(before.size, 'z'));
          chmodSync(`${f}.new`, before.mode & 0o7777);
          utimesSync(`${f}.new`, T, T);
          renameSync(`${f}.new`, f);
        },
        true,
      ],
    ];
    for (const [what, change, changesChecksum] of changes) {
      change();
      const counting = countingDigester();
      const now = await checksumPaths(root, ['.'], undefined, {}, { cache, digestFile: counting.digest });
      expect({ what, read: counting.read.length }).toEqual({ what, read: 1 });
      expect(now !== previous).toBe(changesChecksum);
      expect(now).toBe(await sequentialChecksum(root, ['.']));
      previous = now;
    }
  });

  test('equals the sequential uncached checksum on random trees, cold and warm, at any concurrency', async () => {
    for (let seed = 1; seed <= 8; seed++) {
      const tree = path.join(root, `t${seed}`);
      mkdirSync(tree);
      makeRandomTree(tree, seed);
      const patterns = [['.'], ['*'], ['a*', 'b*'], ['c*/', 'x*']][seed % 4];
      const selection = seed % 3 === 0 ? { exclude: ['*1*', '!**/*5*'] } : {};
      const expected = await sequentialChecksum(tree, patterns, selection);
      const cache = laterCache();
      for (const concurrency of [1, 3, 32]) {
        const opts: ChecksumOptions = { cache, concurrency };
        expect({ seed, concurrency, cold: await checksumPaths(tree, patterns, undefined, selection, { ...opts, cache: laterCache() }) }).toEqual({ seed, concurrency, cold: expected });
        expect({ seed, concurrency, warm: await checksumPaths(tree, patterns, undefined, selection, opts) }).toEqual({ seed, concurrency, warm: expected });
        expect({ seed, concurrency, uncached: await checksumPaths(tree, patterns, undefined, selection, { cache: null, concurrency }) }).toEqual({ seed, concurrency, uncached: expected });
      }
    }
  });

  test('reads at most `concurrency` files at once, finishing in any order, with the same result', async () => {
    makeFlatTree(60);
    const expected = await sequentialChecksum(root, ['.']);
    for (const concurrency of [1, 4, 16]) {
      const counting = countingDigester();
      expect(await checksumPaths(root, ['.'], undefined, {}, { cache: null, concurrency, digestFile: counting.digest })).toBe(expected);
      expect(counting.read).toHaveLength(60);
      expect(counting.maxActive()).toBeLessThanOrEqual(concurrency);
      if (concurrency > 1) expect(counting.maxActive()).toBeGreaterThan(1);
    }
  });

  test('a failed read fails the checksum only once every read it started has ended', async () => {
    makeFlatTree(30);
    const counting = countingDigester();
    const cache = laterCache();
    const failing: FileDigester = async (p, st, signal) => {
      if (p.endsWith('/f5')) throw new Error('disk on fire');
      return counting.digest(p, st, signal);
    };
    await expect(checksumPaths(root, ['.'], undefined, {}, { cache, concurrency: 8, digestFile: failing })).rejects.toThrow('disk on fire');
    expect(counting.active()).toBe(0);
    // the reads queued behind the failure never started
    expect(counting.read.length).toBeLessThan(30);
  });

  test('an abort stops the checksum with its reason and leaves no read running', async () => {
    makeFlatTree(30);
    const abort = new AbortController();
    const counting = countingDigester();
    const aborting: FileDigester = async (p, st, signal) => {
      if (p.endsWith('/f3')) abort.abort(new Error('build cancelled'));
      return counting.digest(p, st, signal);
    };
    await expect(checksumPaths(root, ['.'], abort.signal, {}, { cache: null, concurrency: 4, digestFile: aborting })).rejects.toThrow('build cancelled');
    expect(counting.active()).toBe(0);
  });

  test('a concurrency that is not a positive integer is refused', async () => {
    makeFlatTree(1);
    await expect(checksumPaths(root, ['.'], undefined, {}, { concurrency: 0 })).rejects.toThrow('Cannot compute a checksum: concurrency 0 is not a positive integer');
  });
});
