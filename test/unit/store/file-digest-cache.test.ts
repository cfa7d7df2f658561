import { createHash } from 'node:crypto';
import { chmodSync, linkSync, mkdtempSync, renameSync, rmSync, Stats, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FileDigestCache } from '../../../store/file-digest-cache';

const HOUR = 3_600_000;
const T = 1_700_000_000;
const D1 = createHash('sha256').update('content one\n').digest('hex');
const [DA, DB, DC] = ['a', 'b', 'c'].map((c) => c.repeat(64));
/** a clock an hour ahead: every file made by the test is out of the racy window */
const later = (): number => Date.now() + HOUR;

/** A copy of `st` with some fields changed, for versions a test cannot make on disk. */
function withFields(st: Stats, fields: Partial<Stats>): Stats {
  return Object.assign(Object.create(Stats.prototype) as Stats, st, fields);
}

/** The digest the cache has for `st`, or undefined (a miss, not recorded). */
function get(cache: FileDigestCache, st: Stats): string | undefined {
  const found = cache.lookup(st);
  return 'digest' in found ? found.digest : undefined;
}

/** A miss followed by a read whose digest is recorded: whether the cache kept it. */
function put(cache: FileDigestCache, st: Stats, digest: string): boolean {
  const found = cache.lookup(st);
  if ('digest' in found) throw new Error('expected a miss');
  return found.record(digest);
}

describe('FileDigestCache', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'digest-cache-'));
    file = path.join(dir, 'f');
    writeFileSync(file, 'content one\n');
    // whole seconds, so a test can set the same mtime again exactly
    utimesSync(file, T, T);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('gives back what was recorded for the same file and counts hits and misses', () => {
    const cache = new FileDigestCache({ now: later });
    expect(put(cache, statSync(file), D1)).toBe(true);
    expect(get(cache, statSync(file))).toBe(D1);
    expect(cache.counters()).toEqual({ hits: 1, misses: 1, recorded: 1, refused: 0, evicted: 0 });
  });

  test('a hardlink of a recorded file hits: ctime changes, the key does not hold it', () => {
    const cache = new FileDigestCache({ now: later });
    put(cache, statSync(file), D1);
    linkSync(file, path.join(dir, 'again'));
    const linked = statSync(path.join(dir, 'again'));
    expect(linked.nlink).toBe(2);
    expect(get(cache, linked)).toBe(D1);
  });

  test('a change of size, mtime or mode misses', () => {
    const cache = new FileDigestCache({ now: later });
    const st = statSync(file);
    put(cache, st, D1);
    utimesSync(file, 1000, 1000);
    expect(get(cache, statSync(file))).toBeUndefined();
    utimesSync(file, T, T);
    expect(get(cache, statSync(file))).toBe(D1);
    chmodSync(file, 0o600);
    expect(get(cache, statSync(file))).toBeUndefined();
    chmodSync(file, st.mode & 0o7777);
    writeFileSync(file, 'content two, longer\n');
    utimesSync(file, T, T);
    expect(get(cache, statSync(file))).toBeUndefined();
  });

  test('new content in a new inode misses even with the same size and mtime', () => {
    const cache = new FileDigestCache({ now: later });
    const st = statSync(file);
    put(cache, st, D1);
    const tmp = path.join(dir, 'tmp');
    writeFileSync(tmp, 'content two\n');
    utimesSync(tmp, T, T);
    chmodSync(tmp, st.mode & 0o7777);
    renameSync(tmp, file);
    const now = statSync(file);
    expect([now.size, now.mtimeMs, now.mode]).toEqual([st.size, st.mtimeMs, st.mode]);
    expect(get(cache, now)).toBeUndefined();
  });

  test('a reused inode number with another birth time misses, as does another device', () => {
    const cache = new FileDigestCache({ now: later });
    const st = statSync(file);
    put(cache, st, D1);
    expect(get(cache, withFields(st, { birthtimeMs: st.birthtimeMs + 5 }))).toBeUndefined();
    expect(get(cache, withFields(st, { dev: st.dev + 1 }))).toBeUndefined();
  });

  test('without birth times the ctime keys the inode', () => {
    const cache = new FileDigestCache({ now: later });
    const st = withFields(statSync(file), { birthtimeMs: 0 });
    expect(put(cache, st, D1)).toBe(true);
    expect(get(cache, st)).toBe(D1);
    expect(get(cache, withFields(st, { ctimeMs: st.ctimeMs + 1 }))).toBeUndefined();
  });

  test('refuses a file born within the racy window before its read began, and takes it once the window passed', () => {
    let now = Date.now();
    const cache = new FileDigestCache({ now: () => now, racyWindowMs: 100 });
    const st = withFields(statSync(file), { birthtimeMs: now - 50, mtimeMs: now - HOUR });
    const miss = cache.lookup(st);
    // the read takes long: it is the time the read began that counts
    now += 1000;
    expect('record' in miss && miss.record(D1)).toBe(false);
    expect(get(cache, st)).toBeUndefined();
    expect(put(cache, st, D1)).toBe(true);
    expect(get(cache, st)).toBe(D1);
    expect(cache.counters().refused).toBe(1);
  });

  test('refuses a file written within the racy window, or with an mtime in the future', () => {
    const now = Date.now();
    const cache = new FileDigestCache({ now: () => now, racyWindowMs: 100 });
    // born long ago, written again in place just now: a write in the same clock tick would
    // leave the same mtime, so the entry must wait until no such write can look the same
    const st = withFields(statSync(file), { birthtimeMs: now - HOUR, mtimeMs: now - 20 });
    expect(put(cache, st, D1)).toBe(false);
    const future = withFields(st, { mtimeMs: now + HOUR });
    expect(put(cache, future, D1)).toBe(false);
    const settled = withFields(st, { mtimeMs: now - 101 });
    expect(put(cache, settled, D1)).toBe(true);
  });

  test('never keys an inode number a double cannot hold, nor anything but a regular file', () => {
    const cache = new FileDigestCache({ now: later });
    const big = withFields(statSync(file), { ino: 2 ** 60 });
    expect(put(cache, big, D1)).toBe(false);
    expect(get(cache, big)).toBeUndefined();
    expect(put(cache, statSync(dir), D1)).toBe(false);
    expect(cache.size).toBe(0);
  });

  test('refuses a digest that is not a hex sha256', () => {
    const cache = new FileDigestCache({ now: later });
    expect(() => put(cache, statSync(file), 'sha256:' + D1)).toThrow('is not a hex sha256');
  });

  test('keeps at most maxEntries, dropping the least recently used', () => {
    const cache = new FileDigestCache({ now: later, maxEntries: 2 });
    const st = statSync(file);
    const a = withFields(st, { ino: 1 });
    const b = withFields(st, { ino: 2 });
    const c = withFields(st, { ino: 3 });
    put(cache, a, DA);
    put(cache, b, DB);
    expect(get(cache, a)).toBe(DA);
    put(cache, c, DC);
    expect(cache.size).toBe(2);
    expect(get(cache, b)).toBeUndefined();
    expect([get(cache, a), get(cache, c)]).toEqual([DA, DC]);
    expect(cache.counters().evicted).toBe(1);
  });
});
