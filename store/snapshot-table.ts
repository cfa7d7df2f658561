import { z } from 'zod';
import type { MetaDb } from './meta-db';
import type { SnapshotInfo } from './snapshotter';

/** Which snapshotter a row belongs to: each keeps its snapshots in a directory of its own. */
export type SnapshotterKind = 'overlayfs' | 'native';

const linkedFromSchema = z.array(z.string().regex(/^(local:[A-Za-z0-9._-]{1,128}|layer:[a-f0-9]{24})$/)).max(100_000);

interface Row {
  id: string;
  parent: string | null;
  created_at: string;
  linked_from: string | null;
}

/**
 * The committed snapshots of one snapshotter: the `snapshots` table of the metadata database.
 * A snapshot's files are synced before its row is written, and its row is deleted before its
 * files, so a row always names a complete directory; a directory without a row (a step that
 * was running, a removal cut short) is removed at the next open.
 *
 * Calls are synchronous, so that a caller can put them in a transaction of its own (GC detaches
 * a snapshot and forgets its records in one). Lifecycle: a value over the daemon's MetaDb, made
 * by the snapshotter when it opens.
 */
export class SnapshotTable {
  constructor(
    readonly meta: MetaDb,
    private readonly kind: SnapshotterKind,
  ) {}

  /** Every committed snapshot of this snapshotter, and the rows that do not read (see toInfo). */
  all(): { infos: SnapshotInfo[]; damaged: Array<{ id: string; reason: string }> } {
    const rows = this.meta.db.prepare('SELECT id, parent, created_at, linked_from FROM snapshots WHERE snapshotter = ?').all(this.kind) as Row[];
    const infos: SnapshotInfo[] = [];
    const damaged: Array<{ id: string; reason: string }> = [];
    for (const r of rows) {
      const read = toInfo(r);
      if (typeof read === 'string') damaged.push({ id: r.id, reason: read });
      else infos.push(read);
    }
    return { infos, damaged };
  }

  /**
   * Records committed snapshot `info` and runs `within(info.id)` in the same transaction: the
   * rows that point at the snapshot land with it or not at all.
   */
  commit(info: SnapshotInfo, within?: (id: string) => void): void {
    this.meta.transaction(() => {
      this.insert(info);
      within?.(info.id);
    });
  }

  /** Many rows in one transaction (an import), with `within` run in it too. */
  insertAll(infos: readonly SnapshotInfo[], within?: () => void): void {
    this.meta.transaction(() => {
      for (const info of infos) this.insert(info);
      within?.();
    });
  }

  /** Deletes `ids` in one transaction (children before or after their parents: the check is at commit). */
  delete(...ids: string[]): void {
    this.meta.transaction(() => {
      const stmt = this.meta.db.prepare('DELETE FROM snapshots WHERE id = ? AND snapshotter = ?');
      for (const id of ids) stmt.run(id, this.kind);
    });
  }

  /** Whether the one-time step `name` was done on this root (see meta_events). */
  done(name: string): boolean {
    return this.meta.db.prepare('SELECT 1 FROM meta_events WHERE name = ?').get(`${name}:${this.kind}`) !== undefined;
  }

  /** Marks the one-time step `name` done; inside a transaction of the caller's. */
  markDone(name: string): void {
    this.meta.db.prepare('INSERT OR REPLACE INTO meta_events (name, at) VALUES (?, ?)').run(`${name}:${this.kind}`, new Date().toISOString());
  }

  private insert(info: SnapshotInfo): void {
    this.meta.db
      .prepare('INSERT INTO snapshots (id, snapshotter, parent, created_at, linked_from) VALUES (?, ?, ?, ?, ?)')
      .run(info.id, this.kind, info.parent ?? null, info.createdAt, info.linkedFrom?.length ? JSON.stringify(info.linkedFrom) : null);
  }
}

/**
 * A row as SnapshotInfo, or why it does not read. Only linked_from can fail (our own JSON): a
 * snapshot whose links are unknown cannot be trusted not to share inodes with a later COPY's
 * base, so the caller drops it as damaged rather than guess.
 */
function toInfo(r: Row): SnapshotInfo | string {
  let linkedFrom: string[] | undefined;
  if (r.linked_from !== null) {
    let json: unknown;
    try {
      json = JSON.parse(r.linked_from);
    } catch (err) {
      return `linked_from is not JSON: ${(err as Error).message}`;
    }
    const parsed = linkedFromSchema.safeParse(json);
    if (!parsed.success) return `linked_from is not a list of link sources: ${parsed.error.issues[0]?.message ?? 'invalid'}`;
    linkedFrom = parsed.data;
  }
  return {
    id: r.id,
    ...(r.parent === null ? {} : { parent: r.parent }),
    kind: 'committed',
    createdAt: r.created_at,
    ...(linkedFrom?.length ? { linkedFrom } : {}),
  };
}
