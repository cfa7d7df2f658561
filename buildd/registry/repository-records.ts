import { z } from 'zod';
import type { MetaDb } from '../../store/meta-db';

const digest = z.string().regex(/^sha256:[a-f0-9]{64}$/);

const manifestEntrySchema = z
  .object({
    mediaType: z.string(),
    size: z.number().int().nonnegative(),
    /** the manifest this one refers to (its `subject`), for the referrers API */
    subject: digest.optional(),
    artifactType: z.string().optional(),
    annotations: z.record(z.string()).optional(),
  })
  .strict();
export type ManifestEntry = z.infer<typeof manifestEntrySchema>;

/** A repository as older buildd versions kept it in JSON, maps as arrays of pairs (read by the JSON import). */
export const storedRepositorySchema = z
  .object({
    name: z.string(),
    blobs: z.array(digest),
    manifests: z.array(z.tuple([digest, manifestEntrySchema])),
    tags: z.array(z.tuple([z.string(), digest])),
  })
  .strict();

const annotationsSchema = z.record(z.string());

/** One repository of the embedded registry: what it holds; the bytes are in the content store. */
export interface RepositoryRecord {
  name: string;
  /** blobs linked to the repository (pushed to it, mounted into it): what it may serve */
  blobs: string[];
  /** manifests pushed to the repository, by digest */
  manifests: Map<string, ManifestEntry>;
  tags: Map<string, string>;
}

/**
 * The embedded registry's repositories: rows of the metadata database (registry_repositories
 * and the blobs, manifests and tags that go with each, in the order they were added). Each
 * update of a repository waits for the one before it (an update's `change` may await), and its
 * write is one transaction, so two pushes to one repository never lose each other's tags or
 * links.
 *
 * Lifecycle: opened once per daemon over its MetaDb; a repository lives until it holds nothing.
 */
export class RepositoryRecords {
  private readonly queues = new Map<string, Promise<unknown>>();

  private constructor(private readonly meta: MetaDb) {}

  static on(meta: MetaDb): RepositoryRecords {
    return new RepositoryRecords(meta);
  }

  async get(name: string): Promise<RepositoryRecord | undefined> {
    const db = this.meta.db;
    if (db.prepare('SELECT 1 FROM registry_repositories WHERE name = ?').get(name) === undefined) return undefined;
    const blobs = (db.prepare('SELECT digest FROM registry_blobs WHERE repository = ? ORDER BY rowid').all(name) as Array<{ digest: string }>).map((r) => r.digest);
    const manifests = new Map<string, ManifestEntry>();
    for (const r of db.prepare('SELECT * FROM registry_manifests WHERE repository = ? ORDER BY rowid').all(name) as ManifestRow[]) {
      const entry: ManifestEntry = { mediaType: r.media_type, size: r.size };
      if (r.subject !== null) entry.subject = r.subject;
      if (r.artifact_type !== null) entry.artifactType = r.artifact_type;
      if (r.annotations !== null) {
        const annotations = annotationsSchema.safeParse(parseJson(r.annotations));
        if (annotations.success) entry.annotations = annotations.data;
      }
      manifests.set(r.digest, entry);
    }
    const tags = new Map((db.prepare('SELECT tag, digest FROM registry_tags WHERE repository = ? ORDER BY rowid').all(name) as Array<{ tag: string; digest: string }>).map((r) => [r.tag, r.digest]));
    return { name, blobs, manifests, tags };
  }

  /**
   * Runs `change` on the repository's record (an empty one when it has none) and stores what
   * it returns; a record left without blobs, manifests and tags is removed. Serialized per name.
   */
  update<T>(name: string, change: (r: RepositoryRecord) => T | Promise<T>): Promise<T> {
    const before = this.queues.get(name) ?? Promise.resolve();
    const run = before.then(async () => {
      const record = (await this.get(name)) ?? { name, blobs: [], manifests: new Map(), tags: new Map() };
      const result = await change(record);
      this.replace(record);
      return result;
    });
    const settled = run.then(() => undefined, () => undefined);
    this.queues.set(name, settled);
    void settled.then(() => {
      if (this.queues.get(name) === settled) this.queues.delete(name);
    });
    return run;
  }

  /** Stores `record` whole in one transaction (none of it when it holds nothing). */
  replace(record: RepositoryRecord): void {
    const db = this.meta.db;
    this.meta.transaction(() => {
      // the repository's rows go with it (ON DELETE CASCADE), then are written again in order
      db.prepare('DELETE FROM registry_repositories WHERE name = ?').run(record.name);
      if (record.blobs.length === 0 && record.manifests.size === 0 && record.tags.size === 0) return;
      db.prepare('INSERT INTO registry_repositories (name) VALUES (?)').run(record.name);
      const blob = db.prepare('INSERT OR IGNORE INTO registry_blobs (repository, digest) VALUES (?, ?)');
      for (const d of record.blobs) blob.run(record.name, d);
      const manifest = db.prepare('INSERT INTO registry_manifests (repository, digest, media_type, size, subject, artifact_type, annotations) VALUES (?, ?, ?, ?, ?, ?, ?)');
      for (const [d, m] of record.manifests) {
        manifest.run(record.name, d, m.mediaType, m.size, m.subject ?? null, m.artifactType ?? null, m.annotations === undefined ? null : JSON.stringify(m.annotations));
      }
      const tag = db.prepare('INSERT INTO registry_tags (repository, tag, digest) VALUES (?, ?, ?)');
      for (const [t, d] of record.tags) tag.run(record.name, t, d);
    });
  }

  /** Every repository name, in byte order (the catalog). */
  async names(): Promise<string[]> {
    const rows = this.meta.db.prepare('SELECT name FROM registry_repositories').all() as Array<{ name: string }>;
    return rows.map((r) => r.name).sort(compareAscii);
  }
}

interface ManifestRow {
  digest: string;
  media_type: string;
  size: number;
  subject: string | null;
  artifact_type: string | null;
  annotations: string | null;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Names and tags are ASCII by their grammar: code-unit order is byte order. */
export function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
