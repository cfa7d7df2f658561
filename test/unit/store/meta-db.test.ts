import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CacheStore } from '../../../solver/cache-store';
import { ImageStore } from '../../../store/image-store';
import { LayerIndex } from '../../../store/layer-index';
import { META_DB, MetaDb } from '../../../store/meta-db';

const digest = (c: string): string => 'sha256:' + c.repeat(64);

describe('MetaDb', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'meta-db-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('creates the schema at its version, in WAL mode, and opens it again as it is', () => {
    const a = MetaDb.open(root);
    expect(a.db.pragma('user_version', { simple: true })).toBe(MetaDb.version);
    expect(a.db.pragma('journal_mode', { simple: true })).toBe('wal');
    a.db.prepare("INSERT INTO images (name, digest, media_type, size, descriptor, updated_at) VALUES ('n', 'd', 'm', 1, '{}', 't')").run();
    a.close();
    const b = MetaDb.open(root);
    expect(b.db.prepare('SELECT name FROM images').all()).toEqual([{ name: 'n' }]);
    b.close();
  });

  it('refuses a database from a newer buildd instead of misreading it', () => {
    const raw = new Database(path.join(root, META_DB));
    raw.pragma(`user_version = ${MetaDb.version + 1}`);
    raw.close();
    expect(() => MetaDb.open(root)).toThrow(/schema version \d+ is newer than this buildd's/);
  });

  it('shares one connection per file: the last handle closes it, and a root made again is another database', () => {
    const a = MetaDb.open(root);
    const b = MetaDb.open(root);
    expect(b.db).toBe(a.db);
    a.close();
    a.close();
    // b's handle still counts
    expect(b.db.open).toBe(true);
    b.close();
    expect(b.db.open).toBe(false);
    const c = MetaDb.open(root);
    rmSync(root, { recursive: true, force: true });
    const d = MetaDb.open(root);
    expect(d.db).not.toBe(c.db);
    expect(d.db.prepare('SELECT count(*) AS n FROM images').get()).toEqual({ n: 0 });
    c.close();
    d.close();
  });

  it('rolls a failed transaction back whole', () => {
    const meta = MetaDb.open(root);
    const cache = CacheStore.on(meta);
    expect(() =>
      meta.transaction(() => {
        cache.write({ key: 'k1', snapshot: 's1', createdAt: '2026-01-01T00:00:00.000Z' });
        throw new Error('midway');
      }),
    ).toThrow('midway');
    expect(meta.db.prepare('SELECT count(*) AS n FROM cache_records').get()).toEqual({ n: 0 });
    meta.close();
  });
});

describe('stores over the metadata database', () => {
  let root: string;
  let meta: MetaDb;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'meta-stores-'));
    meta = MetaDb.open(root);
  });
  afterEach(() => {
    meta.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('CacheStore keeps records, counts uses and lists them oldest use first', async () => {
    const cache = CacheStore.on(meta);
    await cache.put({ key: 'a', snapshot: 'snap-a', createdAt: '2026-01-01T00:00:00.000Z' });
    await cache.put({ key: 'b', snapshot: null, createdAt: '2026-01-02T00:00:00.000Z' });
    expect(await cache.get('a')).toEqual({ key: 'a', snapshot: 'snap-a', createdAt: '2026-01-01T00:00:00.000Z' });
    expect(await cache.get('b')).toEqual({ key: 'b', snapshot: null, createdAt: '2026-01-02T00:00:00.000Z' });
    expect(await cache.get('c')).toBeUndefined();
    await cache.markUsed('a', new Date('2026-01-03T00:00:00.000Z'));
    expect((await cache.usage()).map((u) => [u.key, u.useCount, u.lastUsedAt])).toEqual([
      ['b', 1, '2026-01-02T00:00:00.000Z'],
      ['a', 2, '2026-01-03T00:00:00.000Z'],
    ]);
    await cache.delete('a');
    expect(await cache.get('a')).toBeUndefined();
    // another connection to the same root sees what was written
    expect(await (await CacheStore.open(root)).get('b')).toBeDefined();
  });

  it('LayerIndex keeps a primary and its variants apart, optional fields as they were', async () => {
    const layers = LayerIndex.on(meta);
    const pulled = { digest: digest('a'), size: 10, diffId: digest('b'), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', source: 'pull' as const };
    const zstd = { digest: digest('c'), size: 8, diffId: digest('b'), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', source: 'build' as const, compression: { type: 'zstd' as const, level: 3 }, diffSize: 2048 };
    await layers.put('snap1', pulled);
    await layers.putVariant('snap1', { type: 'zstd', level: 3 }, zstd);
    await layers.putUnstored('snap1', { digest: digest('b'), size: 2048, diffId: digest('b'), mediaType: 'application/vnd.oci.image.layer.v1.tar' });
    expect(await layers.get('snap1')).toEqual(pulled);
    expect(await layers.getVariant('snap1', { type: 'zstd', level: 3 })).toEqual(zstd);
    expect(await layers.getVariant('snap1', { type: 'zstd' })).toBeUndefined();
    expect(await layers.getUnstored('snap1')).toEqual({ digest: digest('b'), size: 2048, diffId: digest('b'), mediaType: 'application/vnd.oci.image.layer.v1.tar' });
    await expect(layers.put('../x', pulled)).rejects.toThrow(/bad snapshot id/);
  });

  it('ImageStore keeps the descriptor as given, annotations included', async () => {
    const images = ImageStore.on(meta);
    const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('d'), size: 123, annotations: { 'org.opencontainers.image.ref.name': 'x' } };
    await images.put('docker.io/library/x:latest', target);
    expect((await images.get('docker.io/library/x:latest'))?.target).toEqual(target);
    expect(await images.get('docker.io/library/y:latest')).toBeUndefined();
  });
});
