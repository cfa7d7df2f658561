import { MetaDb } from '../store/meta-db';
import type { KeyParts } from './key-parts';

/** A cache record: the committed snapshot an op with this key produced (null: it changed nothing). */
export interface CacheRecord {
  key: string;
  snapshot: string | null;
  createdAt: string;
  /** what made it (the step's name), for du and prune */
  description?: string;
}

/** A cache record as `buildctl du` shows it: with when it was last used and how often. */
export interface CacheUsage extends CacheRecord {
  lastUsedAt: string;
  useCount: number;
}

interface Row {
  key: string;
  snapshot: string | null;
  created_at: string;
  last_used_at: string;
  use_count: number;
  description: string | null;
}

/**
 * Persistent map from cache key to result: the cache_records table of the metadata database.
 * Lifecycle: opened once per daemon over its MetaDb; records live until removed (GC).
 */
export class CacheStore {
  private constructor(private readonly meta: MetaDb) {}

  /** Over the daemon's database. */
  static on(meta: MetaDb): CacheStore {
    return new CacheStore(meta);
  }

  /** Over a database of its own at `<root>/meta.db` (tests, tools). */
  static async open(root: string): Promise<CacheStore> {
    return new CacheStore(MetaDb.open(root));
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    return this.readRecord(key);
  }

  private readRecord(key: string): CacheRecord | undefined {
    const row = this.meta.db.prepare('SELECT key, snapshot, created_at FROM cache_records WHERE key = ?').get(key) as Pick<Row, 'key' | 'snapshot' | 'created_at'> | undefined;
    return row === undefined ? undefined : { key: row.key, snapshot: row.snapshot, createdAt: row.created_at };
  }

  /**
   * A hit: the record, counted as used now, in one synchronous step. GC decides and detaches
   * in one synchronous step too, so either it ran first (and this misses) or this did (and
   * GC sees the use of a running build and keeps the snapshot).
   */
  async take(key: string, at: Date = new Date()): Promise<CacheRecord | undefined> {
    const record = this.readRecord(key);
    if (record !== undefined) this.meta.db.prepare('UPDATE cache_records SET last_used_at = ?, use_count = use_count + 1 WHERE key = ?').run(at.toISOString(), key);
    return record;
  }

  /** Counts a hit on `key` (for `du` and GC's least-recently-used order). */
  async markUsed(key: string, at: Date = new Date()): Promise<void> {
    this.meta.db.prepare('UPDATE cache_records SET last_used_at = ?, use_count = use_count + 1 WHERE key = ?').run(at.toISOString(), key);
  }

  async put(record: CacheRecord): Promise<void> {
    this.write(record);
  }

  /** {@link put}, synchronously: for a caller inside a transaction (the JSON import, a commit's own). */
  write(record: CacheRecord): void {
    this.meta.db
      .prepare(
        `INSERT INTO cache_records (key, snapshot, created_at, last_used_at, use_count, description) VALUES (?, ?, ?, ?, 1, ?)
         ON CONFLICT (key) DO UPDATE SET snapshot = excluded.snapshot, created_at = excluded.created_at, last_used_at = excluded.last_used_at,
           use_count = use_count + 1, description = coalesce(excluded.description, description)`,
      )
      .run(record.key, record.snapshot, record.createdAt, record.createdAt, record.description ?? null);
  }

  async delete(key: string): Promise<void> {
    this.meta.db.prepare('DELETE FROM cache_records WHERE key = ?').run(key);
  }

  /** The last build of step `step` (see stepIdentity): its key and parts. */
  async lastStepKey(step: string): Promise<{ key: string; parts: KeyParts } | undefined> {
    const row = this.meta.db.prepare('SELECT key, parts FROM step_keys WHERE step = ?').get(step) as { key: string; parts: string } | undefined;
    if (row === undefined) return undefined;
    try {
      // our own JSON; a row that does not read is no explanation, never a failed build
      return { key: row.key, parts: JSON.parse(row.parts) as KeyParts };
    } catch {
      return undefined;
    }
  }

  async recordStepKey(step: string, key: string, parts: KeyParts): Promise<void> {
    this.meta.db.prepare('INSERT OR REPLACE INTO step_keys (step, key, parts, at) VALUES (?, ?, ?, ?)').run(step, key, JSON.stringify(parts), new Date().toISOString());
  }

  /** Every record with its use, oldest use first. */
  async usage(): Promise<CacheUsage[]> {
    const rows = this.meta.db.prepare('SELECT key, snapshot, created_at, last_used_at, use_count, description FROM cache_records ORDER BY last_used_at, key').all() as Row[];
    return rows.map((r) => ({
      key: r.key,
      snapshot: r.snapshot,
      createdAt: r.created_at,
      lastUsedAt: r.last_used_at,
      useCount: r.use_count,
      ...(r.description === null ? {} : { description: r.description }),
    }));
  }
}
