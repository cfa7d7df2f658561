import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { readJsonFile } from '../../store/atomic-file';
import { JsonRecordStore } from '../../store/json-record-store';

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

/** As stored: maps as arrays of pairs, so that no tag (`__proto__`) can meet an object's own machinery. */
const storedSchema = z
  .object({
    name: z.string(),
    blobs: z.array(digest),
    manifests: z.array(z.tuple([digest, manifestEntrySchema])),
    tags: z.array(z.tuple([z.string(), digest])),
  })
  .strict();
type StoredRecord = z.infer<typeof storedSchema>;

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
 * The embedded registry's repositories, one JSON record each under `<dir>` (named by the
 * SHA-256 of the repository name), changed one at a
 * time per repository (an update waits for the one before it), so two pushes to one
 * repository never lose each other's tags or links.
 *
 * Lifecycle: opened once per daemon; a record lives until its repository holds nothing.
 */
export class RepositoryRecords {
  private readonly queues = new Map<string, Promise<unknown>>();

  private constructor(
    private readonly dir: string,
    private readonly records: JsonRecordStore<StoredRecord>,
  ) {}

  static async open(dir: string): Promise<RepositoryRecords> {
    return new RepositoryRecords(dir, await JsonRecordStore.open(dir, storedSchema, fileName));
  }

  async get(name: string): Promise<RepositoryRecord | undefined> {
    const r = await this.records.get(name);
    if (r?.name !== name) return undefined;
    return { name, blobs: r.blobs, manifests: new Map(r.manifests), tags: new Map(r.tags) };
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
      if (record.blobs.length === 0 && record.manifests.size === 0 && record.tags.size === 0) await this.records.delete(name);
      else await this.records.put(name, { name, blobs: record.blobs, manifests: [...record.manifests], tags: [...record.tags] });
      return result;
    });
    const settled = run.then(() => undefined, () => undefined);
    this.queues.set(name, settled);
    void settled.then(() => {
      if (this.queues.get(name) === settled) this.queues.delete(name);
    });
    return run;
  }

  /** Every repository name, in byte order (the catalog): each record says its own name. */
  async names(): Promise<string[]> {
    const names: string[] = [];
    for (const f of await fsp.readdir(this.dir)) {
      if (!/^[a-f0-9]{64}\.json$/.test(f)) continue;
      const parsed = storedSchema.safeParse(await readJsonFile(path.join(this.dir, f)));
      if (parsed.success && fileName(parsed.data.name) === path.basename(f, '.json')) names.push(parsed.data.name);
    }
    return names.sort(compareAscii);
  }
}

/** A name's record file: its SHA-256, a fixed length whatever the name's (up to 255 characters). */
function fileName(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

/** Names and tags are ASCII by their grammar: code-unit order is byte order. */
export function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
