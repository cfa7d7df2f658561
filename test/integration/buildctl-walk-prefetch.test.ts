import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { localIgnore, walkContext, type WalkEntry } from '../../buildctl/context-walk';
import type { PrefetchedWalk as PrefetchedWalkType } from '../../buildctl/walk-prefetch';
import { loadControlApi } from '../../buildd/api/load-proto';
import { writeXattrs } from '../../store/xattrs';
import { ensureBuilt } from '../helpers/daemon';

/**
 * PrefetchedWalk runs the context walk in a worker thread of dist/ (a worker needs JavaScript):
 * the same entries in the same order as walkContext, the same errors, and a worker that a
 * reader never drains is stopped by close().
 */
let PrefetchedWalk: typeof PrefetchedWalkType;
let dir: string;

beforeAll(async () => {
  ensureBuilt();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ({ PrefetchedWalk } = require(path.resolve(__dirname, '..', '..', 'dist', 'buildctl', 'walk-prefetch.js')) as { PrefetchedWalk: typeof PrefetchedWalkType });
  dir = mkdtempSync(path.join(os.tmpdir(), 'walk-prefetch-'));
  for (let d = 0; d < 30; d++) {
    mkdirSync(path.join(dir, `d${d}`, 'sub'), { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(path.join(dir, `d${d}`, f % 2 ? `f${f}.txt` : `sub/f${f}.log`), `${d} ${f}`);
  }
  symlinkSync('d0/f1.txt', path.join(dir, 'link'));
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
  writeFileSync(path.join(dir, '.dockerignore'), '*/sub\n!d3/sub/f0.log\n');
  await writeXattrs(path.join(dir, 'd1', 'f1.txt'), new Map([['user.team', Buffer.from('build')]]));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function collect<T>(walk: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const e of walk) out.push(e);
  return out;
}

test('yields what walkContext yields, in its order, with the ignore rules and attributes', async () => {
  const locals = { context: dir, dockerfile: dir };
  const expected = [...walkContext(dir, await localIgnore('context', locals, 'Dockerfile'))];
  const walk = PrefetchedWalk.start('context', locals, 'Dockerfile', 'entries');
  try {
    const got = await collect(walk.entries());
    expect(got).toEqual(expected);
    expect(got.map((e) => e.rel)).toContain('d3/sub/f0.log');
    expect(got.map((e) => e.rel)).not.toContain('d4/sub/f0.log');
    const attr = got.find((e) => e.rel === 'd1/f1.txt')?.xattrs.get('user.team');
    expect(Buffer.isBuffer(attr) && attr.toString()).toBe('build');
  } finally {
    await walk.close();
  }
});

test('for a listing, yields walkContext\'s entries encoded, and the files with content as columns', async () => {
  const locals = { context: dir, dockerfile: dir };
  const expected = [...walkContext(dir, await localIgnore('context', locals, 'Dockerfile'))];
  const walk = PrefetchedWalk.start('context', locals, 'Dockerfile', 'listing');
  const decode = loadControlApi().service.Build?.requestDeserialize as (b: Buffer) => { listing: { paths: string[]; sizes: number[]; xattrs: Array<{ index: number }> } };
  const paths: string[] = [];
  const files: Array<[string, number, number]> = [];
  try {
    for await (const batch of walk.batches()) {
      const { listing } = decode(Buffer.from(batch.listing));
      paths.push(...listing.paths);
      batch.files.rels.forEach((rel, i) => files.push([rel, batch.files.sizes[i] as number, batch.files.mtimes[i] as number]));
    }
  } finally {
    await walk.close();
  }
  expect(paths).toEqual(expected.map((e) => e.rel));
  expect(files).toEqual(expected.filter((e) => e.type === 'FILE' && e.size > 0).map((e) => [e.rel, e.size, e.mtimeMs]));
});

test('fails as walkContext fails, with its code and message', async () => {
  const missing = path.join(dir, 'no-such-dir');
  const walk = PrefetchedWalk.start('context', { context: missing }, 'Dockerfile');
  try {
    await expect(collect(walk.batches())).rejects.toMatchObject({ code: 'invalid-argument', message: `Cannot read local directory ${missing}: ENOENT` });
  } finally {
    await walk.close();
  }
});

test('a walk nobody reads stops at close, after at most its bounded lead', async () => {
  const walk = PrefetchedWalk.start('context', { context: dir }, 'Dockerfile');
  await walk.close();
  await walk.close();
});
