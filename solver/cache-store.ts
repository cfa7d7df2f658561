import * as path from 'node:path';
import { z } from 'zod';
import { JsonRecordStore } from '../store/json-record-store';

const recordSchema = z.object({ key: z.string(), snapshot: z.string().nullable(), createdAt: z.string() }).strict();

/** A cache record: the committed snapshot an op with this key produced. */
export type CacheRecord = z.infer<typeof recordSchema>;

/**
 * Persistent map from cache key to result, one atomic JSON record per key under `<root>/cache`.
 * Lifecycle: opened once per daemon; records live until removed (GC).
 */
export class CacheStore {
  private constructor(private readonly records: JsonRecordStore<CacheRecord>) {}

  static async open(root: string): Promise<CacheStore> {
    return new CacheStore(await JsonRecordStore.open(path.join(root, 'cache'), recordSchema, (key) => key.replace(/^sha256:/, '')));
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const record = await this.records.get(key);
    // A damaged record is a miss, not a failed build: the step simply runs again.
    return record?.key === key ? record : undefined;
  }

  async put(record: CacheRecord): Promise<void> {
    await this.records.put(record.key, record);
  }

  async delete(key: string): Promise<void> {
    await this.records.delete(key);
  }
}
