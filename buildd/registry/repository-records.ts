import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
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

const recordSchema = z
  .object({
    name: z.string(),
    /** blobs linked to the repository (pushed to it, mounted into it): what it may serve */
    blobs: z.array(digest),
    /** manifests pushed to the repository, by digest */
    manifests: z.record(digest, manifestEntrySchema),
    tags: z.record(z.string(), digest),
  })
  .strict();
/** One repository of the embedded registry: what it holds; the bytes are in the content store. */
export type RepositoryRecord = z.infer<typeof recordSchema>;

/**
 * The embedded registry's repositories, one JSON record each under `<dir>`, changed one at a
 * time per repository (an update waits for the one before it), so two pushes to one
 * repository never lose each other's tags or links.
 *
 * Lifecycle: opened once per daemon; a record lives until its repository holds nothing.
 */
export class RepositoryRecords {
  private readonly queues = new Map<string, Promise<unknown>>();

  private constructor(
    private readonly dir: string,
    private readonly records: JsonRecordStore<RepositoryRecord>,
  ) {}

  static async open(dir: string): Promise<RepositoryRecords> {
    return new RepositoryRecords(dir, await JsonRecordStore.open(dir, recordSchema, fileName));
  }

  async get(name: string): Promise<RepositoryRecord | undefined> {
    const r = await this.records.get(name);
    return r?.name === name ? r : undefined;
  }

  /**
   * Runs `change` on the repository's record (an empty one when it has none) and stores what
   * it returns; a record left without blobs, manifests and tags is removed. Serialized per name.
   */
  update<T>(name: string, change: (r: RepositoryRecord) => T | Promise<T>): Promise<T> {
    const before = this.queues.get(name) ?? Promise.resolve();
    const run = before.then(async () => {
      const record = (await this.get(name)) ?? { name, blobs: [], manifests: {}, tags: {} };
      const result = await change(record);
      if (record.blobs.length === 0 && Object.keys(record.manifests).length === 0 && Object.keys(record.tags).length === 0) await this.records.delete(name);
      else await this.records.put(name, record);
      return result;
    });
    const settled = run.then(() => undefined, () => undefined);
    this.queues.set(name, settled);
    void settled.then(() => {
      if (this.queues.get(name) === settled) this.queues.delete(name);
    });
    return run;
  }

  /** Every repository name, in byte order (the catalog). */
  async names(): Promise<string[]> {
    const files = await fsp.readdir(this.dir);
    const names: string[] = [];
    for (const f of files) {
      if (!f.endsWith('.json')) continue;
      const name = Buffer.from(path.basename(f, '.json'), 'base64url').toString('utf8');
      if (fileName(name) === path.basename(f, '.json')) names.push(name);
    }
    return names.sort(compareAscii);
  }
}

function fileName(name: string): string {
  return Buffer.from(name).toString('base64url');
}

/** Names and tags are ASCII by their grammar: code-unit order is byte order. */
export function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
