import type { ContentStore } from '../../store/content-store';
import type { MetaDb } from '../../store/meta-db';

/** What the cache records say of one snapshot: its keys' last use, total uses and a description. */
export interface SnapshotUse {
  lastUsedAt: string;
  useCount: number;
  description?: string;
}

/**
 * The queries GC and du make over the whole metadata database: they cross the tables the
 * stores own one by one (cache_records, layers, snapshot_sizes, images, registry_*), so they
 * live here rather than in any one store. Lifecycle: a value over the daemon's MetaDb.
 */
export class RecordQueries {
  constructor(private readonly meta: MetaDb) {}

  /** Per snapshot named by a cache record: the latest use of any of its keys, the sum of uses, the newest description. */
  snapshotUse(): Map<string, SnapshotUse> {
    const rows = this.meta.db
      .prepare(
        `SELECT snapshot, max(last_used_at) AS last_used_at, sum(use_count) AS use_count,
                (SELECT description FROM cache_records c2 WHERE c2.snapshot = c.snapshot AND description IS NOT NULL ORDER BY created_at DESC LIMIT 1) AS description
         FROM cache_records c WHERE snapshot IS NOT NULL GROUP BY snapshot`,
      )
      .all() as Array<{ snapshot: string; last_used_at: string; use_count: number; description: string | null }>;
    return new Map(rows.map((r) => [r.snapshot, { lastUsedAt: r.last_used_at, useCount: r.use_count, ...(r.description === null ? {} : { description: r.description }) }]));
  }

  /** Snapshots some layers row names (their blobs are known): kept out of the leak sweep. */
  indexedSnapshots(): Set<string> {
    return new Set((this.meta.db.prepare('SELECT DISTINCT snapshot FROM layers').all() as Array<{ snapshot: string }>).map((r) => r.snapshot));
  }

  sizes(): Map<string, number> {
    return new Map((this.meta.db.prepare('SELECT snapshot, size FROM snapshot_sizes').all() as Array<{ snapshot: string; size: number }>).map((r) => [r.snapshot, r.size]));
  }

  /** Bytes of the content store's blobs and of the snapshots measured so far (a snapshot is measured once, by du or GC). */
  storedBytes(): { content: number; snapshots: number } {
    const one = (sql: string): number => (this.meta.db.prepare(sql).get() as { n: number }).n;
    return { content: one('SELECT COALESCE(SUM(size), 0) AS n FROM blobs'), snapshots: one('SELECT COALESCE(SUM(size), 0) AS n FROM snapshot_sizes') };
  }

  putSize(snapshot: string, size: number): void {
    this.meta.db.prepare('INSERT OR REPLACE INTO snapshot_sizes (snapshot, size) VALUES (?, ?)').run(snapshot, size);
  }

  /**
   * Removes every row that refers to `snapshot` (its cache records, layer rows, size) in one
   * transaction, so a lookup after it misses instead of finding a snapshot about to go.
   */
  forgetSnapshot(snapshot: string): void {
    this.meta.transaction(() => {
      this.meta.db.prepare('DELETE FROM cache_records WHERE snapshot = ?').run(snapshot);
      this.meta.db.prepare('DELETE FROM layers WHERE snapshot = ?').run(snapshot);
      this.meta.db.prepare('DELETE FROM snapshot_sizes WHERE snapshot = ?').run(snapshot);
    });
  }

  /** Cache records whose snapshot is gone (removed by hand, damaged at load): misses anyway. */
  forgetMissing(existing: ReadonlySet<string>): number {
    const rows = this.meta.db.prepare('SELECT DISTINCT snapshot FROM cache_records WHERE snapshot IS NOT NULL UNION SELECT DISTINCT snapshot FROM layers').all() as Array<{ snapshot: string }>;
    const gone = rows.map((r) => r.snapshot).filter((s) => !existing.has(s));
    for (const s of gone) this.forgetSnapshot(s);
    return gone.length;
  }

  /** Whether a row names blob `digest` directly (a layer, an image, the registry's blobs and manifests). */
  refersTo(digest: string): boolean {
    return (
      this.meta.db
        .prepare('SELECT 1 FROM layers WHERE digest = @d UNION ALL SELECT 1 FROM images WHERE digest = @d UNION ALL SELECT 1 FROM registry_blobs WHERE digest = @d UNION ALL SELECT 1 FROM registry_manifests WHERE digest = @d LIMIT 1')
        .get({ d: digest }) !== undefined
    );
  }

  /**
   * Every blob something still refers to: the manifests (and what they list) of named images
   * and of the embedded registry, the registry's linked blobs, and every layers row's blob.
   * Manifests and indexes are read from the content store to follow their children.
   */
  async blobRoots(content: ContentStore): Promise<Set<string>> {
    const db = this.meta.db;
    const roots = new Set<string>();
    const pending: string[] = [];
    const add = (d: string, follow: boolean): void => {
      if (roots.has(d)) return;
      roots.add(d);
      if (follow) pending.push(d);
    };
    for (const r of db.prepare('SELECT digest FROM images UNION SELECT digest FROM registry_manifests').all() as Array<{ digest: string }>) add(r.digest, true);
    for (const r of db.prepare('SELECT digest FROM registry_blobs UNION SELECT digest FROM layers').all() as Array<{ digest: string }>) add(r.digest, false);
    while (pending.length > 0) {
      const d = pending.pop() as string;
      const doc = await content.readJson(d).catch(() => undefined);
      for (const child of childDigests(doc)) add(child.digest, child.manifest);
    }
    return roots;
  }
}

/** The descriptors a manifest or index lists (config, layers, manifests, subject); nothing for anything else. */
function childDigests(doc: unknown): Array<{ digest: string; manifest: boolean }> {
  if (typeof doc !== 'object' || doc === null) return [];
  const o = doc as Record<string, unknown>;
  const out: Array<{ digest: string; manifest: boolean }> = [];
  const take = (v: unknown, manifest: boolean): void => {
    if (typeof v === 'object' && v !== null && typeof (v as { digest?: unknown }).digest === 'string') out.push({ digest: (v as { digest: string }).digest, manifest });
  };
  take(o['config'], false);
  if (Array.isArray(o['layers'])) for (const l of o['layers']) take(l, false);
  if (Array.isArray(o['manifests'])) for (const m of o['manifests']) take(m, true);
  take(o['subject'], true);
  return out;
}
