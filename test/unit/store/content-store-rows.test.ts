import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { LocalContentStore } from '../../../store/content-store';
import { MetaDb } from '../../../store/meta-db';

const sha = (s: string): string => 'sha256:' + createHash('sha256').update(s).digest('hex');

describe('LocalContentStore over the metadata database (the blobs table)', () => {
  let root: string;
  let meta: MetaDb;
  const rows = (): Array<{ digest: string; size: number }> => meta.db.prepare('SELECT digest, size FROM blobs ORDER BY digest').all() as Array<{ digest: string; size: number }>;
  const writtenAt = (digest: string): string => (meta.db.prepare('SELECT written_at FROM blobs WHERE digest = ?').get(digest) as { written_at: string }).written_at;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'content-rows-'));
    meta = MetaDb.open(root);
  });
  afterEach(async () => {
    meta.close();
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('writes a row per blob, lists by the table, and deletes the row with the file', async () => {
    const store = await LocalContentStore.open(path.join(root, 'content'), { meta });
    const a = await store.ingest(Readable.from([Buffer.from('alpha')]));
    const b = await store.ingest(Readable.from([Buffer.from('beta!!')]));
    expect(rows()).toEqual([a, b].sort((x, y) => (x.digest < y.digest ? -1 : 1)).map((x) => ({ digest: x.digest, size: x.size })));
    expect((await store.list()).map((x) => x.digest).sort()).toEqual([a.digest, b.digest].sort());
    await store.delete(a.digest);
    expect(rows()).toEqual([{ digest: b.digest, size: 6 }]);
    expect(await store.info(a.digest)).toBeUndefined();
  });

  it('abandons the stream of a blob it has without an unheard error (an HTTP body reports its destruction as one)', async () => {
    const store = await LocalContentStore.open(path.join(root, 'content'), { meta });
    const a = await store.ingest(Readable.from([Buffer.from('alpha')]));
    // as undici's BodyReadable: destroy() emits 'error' (RequestAbortedError)
    const body = new Readable({ read() {}, destroy(_err, cb) { cb(new Error('Request aborted')); } });
    await expect(store.ingest(body, { digest: a.digest })).resolves.toMatchObject({ digest: a.digest });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(body.destroyed).toBe(true);
  });

  it('stamps a blob an ingest finds present as written now: GC must take it as about to be used', async () => {
    const store = await LocalContentStore.open(path.join(root, 'content'), { meta });
    const a = await store.ingest(Readable.from([Buffer.from('alpha')]));
    meta.db.prepare('UPDATE blobs SET written_at = ? WHERE digest = ?').run('2020-01-01T00:00:00.000Z', a.digest);
    await store.ingest(Readable.from([Buffer.from('alpha')]), { digest: a.digest });
    expect(Date.parse(writtenAt(a.digest))).toBeGreaterThan(Date.parse('2026-01-01T00:00:00.000Z'));
  });

  it('collects a blob only when it is old and unreferenced, checked as its name goes; a blob found by info() counts as new', async () => {
    const store = await LocalContentStore.open(path.join(root, 'content'), { meta });
    const a = await store.ingest(Readable.from([Buffer.from('alpha')]));
    const cutoff = Date.now() + 60_000;
    expect(await store.collect(a.digest, Date.now() - 60_000, () => false)).toBe(false); // too new
    expect(await store.collect(a.digest, cutoff, () => true)).toBe(false); // referenced
    meta.db.prepare('UPDATE blobs SET written_at = ? WHERE digest = ?').run('2020-01-01T00:00:00.000Z', a.digest);
    // a build finds it: stamped as used now, so a GC that listed it before keeps it
    expect(await store.info(a.digest)).toEqual(a);
    expect(await store.collect(a.digest, Date.parse('2026-01-01T00:00:00.000Z'), () => false)).toBe(false);
    expect(await store.collect(a.digest, cutoff, () => false)).toBe(true);
    expect(await store.info(a.digest)).toBeUndefined();
    expect(rows()).toEqual([]);
    expect(await store.collect(a.digest, cutoff, () => false)).toBe(false);
  });

  it('at open adopts a file without a row (dated by its mtime) and drops a row without a file', async () => {
    // a store without the database stands for a crash between a rename and its row
    const bare = await LocalContentStore.open(path.join(root, 'content'));
    const orphan = await bare.ingest(Readable.from([Buffer.from('orphan')]));
    const old = new Date('2026-02-03T04:05:06.000Z');
    await fsp.utimes(bare.blobPath(orphan.digest), old, old);
    meta.db.prepare('INSERT INTO blobs (digest, size, written_at) VALUES (?, 5, ?)').run(sha('gone!'), new Date().toISOString());
    const store = await LocalContentStore.open(path.join(root, 'content'), { meta });
    expect(rows()).toEqual([{ digest: orphan.digest, size: 6 }]);
    expect(writtenAt(orphan.digest)).toBe(old.toISOString());
    expect(await store.list()).toEqual([{ digest: orphan.digest, size: 6, writtenAtMs: old.getTime() }]);
  });
});
