import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { importJsonRecords } from '../../../buildd/meta-json-import';
import { RepositoryRecords } from '../../../buildd/registry/repository-records';
import { CacheStore } from '../../../solver/cache-store';
import { ImageStore } from '../../../store/image-store';
import { LayerIndex } from '../../../store/layer-index';
import { MetaDb } from '../../../store/meta-db';

const digest = (c: string): string => 'sha256:' + c.repeat(64);

/** Writes `record` where the pre-database store kept it: `<root>/<dir>/<name>.json`. */
function oldRecord(root: string, dir: string, name: string, record: unknown): void {
  mkdirSync(path.join(root, dir), { recursive: true });
  writeFileSync(path.join(root, dir, `${name}.json`), typeof record === 'string' ? record : JSON.stringify(record));
}

describe('importJsonRecords', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'json-import-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("moves an older buildd's records into the database, leaves damaged ones out and removes the directories", async () => {
    const key = digest('1');
    oldRecord(root, 'cache', key.slice('sha256:'.length), { key, snapshot: 'abc', createdAt: '2026-01-01T00:00:00.000Z' });
    oldRecord(root, 'cache', 'f'.repeat(64), { key: digest('2'), snapshot: 'abc', createdAt: 'x' }); // names another key
    oldRecord(root, 'cache', 'e'.repeat(64), '{"key": "trunc');
    const pulled = { digest: digest('a'), size: 10, diffId: digest('b'), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', source: 'pull' };
    const zstd = { digest: digest('c'), size: 8, diffId: digest('b'), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', source: 'build', compression: { type: 'zstd', level: 3 }, diffSize: 99 };
    oldRecord(root, 'layers', 'abc', pulled);
    oldRecord(root, 'layers', 'abc@zstd-3', zstd);
    const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('d'), size: 5 };
    const name = 'docker.io/library/app:latest';
    oldRecord(root, 'images', Buffer.from(name).toString('base64url'), { name, target, updatedAt: '2026-01-02T00:00:00.000Z' });
    const repo = 'team/app';
    oldRecord(root, path.join('registry', 'repositories'), createHash('sha256').update(repo).digest('hex'), {
      name: repo,
      blobs: [digest('a'), digest('c')],
      manifests: [[digest('d'), { mediaType: target.mediaType, size: 5, subject: digest('e'), annotations: { k: 'v' } }]],
      tags: [['v1', digest('d')]],
    });

    const meta = MetaDb.open(root);
    try {
      expect(await importJsonRecords(meta, root)).toEqual({ cache: 1, layers: 2, images: 1, repositories: 1, skipped: 2 });
      for (const dir of ['cache', 'layers', 'images', 'registry/repositories']) expect(existsSync(path.join(root, dir))).toBe(false);
      expect(await CacheStore.on(meta).get(key)).toEqual({ key, snapshot: 'abc', createdAt: '2026-01-01T00:00:00.000Z' });
      expect(await CacheStore.on(meta).get(digest('2'))).toBeUndefined();
      expect(await LayerIndex.on(meta).get('abc')).toEqual(pulled);
      expect(await LayerIndex.on(meta).getVariant('abc', { type: 'zstd', level: 3 })).toEqual(zstd);
      expect(await ImageStore.on(meta).get(name)).toEqual({ name, target, updatedAt: '2026-01-02T00:00:00.000Z' });
      const repos = RepositoryRecords.on(meta);
      expect(await repos.names()).toEqual([repo]);
      expect(await repos.get(repo)).toEqual({
        name: repo,
        blobs: [digest('a'), digest('c')],
        manifests: new Map([[digest('d'), { mediaType: target.mediaType, size: 5, subject: digest('e'), annotations: { k: 'v' } }]]),
        tags: new Map([['v1', digest('d')]]),
      });
      // nothing left to import on the next start
      expect(await importJsonRecords(meta, root)).toBeUndefined();
    } finally {
      meta.close();
    }
  });

  it('only removes the directories when a crash came after the import committed', async () => {
    const meta = MetaDb.open(root);
    try {
      meta.db.prepare("INSERT INTO meta_events (name, at) VALUES ('json-import', 'then')").run();
      oldRecord(root, 'images', Buffer.from('x').toString('base64url'), { name: 'x', target: { mediaType: 'm', digest: digest('d'), size: 1 }, updatedAt: 't' });
      expect(await importJsonRecords(meta, root)).toBeUndefined();
      expect(existsSync(path.join(root, 'images'))).toBe(false);
      expect(await ImageStore.on(meta).get('x')).toBeUndefined();
    } finally {
      meta.close();
    }
  });
});

describe('RepositoryRecords', () => {
  it('serializes updates of one repository and drops a repository left empty', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'repo-records-'));
    const meta = MetaDb.open(root);
    try {
      const repos = RepositoryRecords.on(meta);
      await Promise.all(
        ['a', 'b', 'c'].map((t) =>
          repos.update('r', async (r) => {
            await new Promise((resolve) => setImmediate(resolve));
            r.tags.set(t, digest(t));
          }),
        ),
      );
      expect([...((await repos.get('r'))?.tags.keys() ?? [])]).toEqual(['a', 'b', 'c']);
      await repos.update('r', (r) => r.tags.clear());
      expect(await repos.get('r')).toBeUndefined();
      expect(await repos.names()).toEqual([]);
    } finally {
      meta.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
