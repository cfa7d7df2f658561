import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from '../store/atomic-file';

const recordSchema = z.object({ key: z.string(), snapshot: z.string().nullable(), createdAt: z.string() }).strict();

/** A cache record: the committed snapshot an op with this key produced. */
export type CacheRecord = z.infer<typeof recordSchema>;

/**
 * Persistent map from cache key to result, one small JSON file per key under `<root>/cache`,
 * written atomically (tmp, fsync, rename) so a record is either whole or absent after a crash.
 * Lifecycle: opened once per daemon; records live until removed (GC).
 */
export class CacheStore {
  private constructor(private readonly dir: string) {}

  static async open(root: string): Promise<CacheStore> {
    const dir = path.join(root, 'cache');
    await fsp.mkdir(dir, { recursive: true });
    return new CacheStore(dir);
  }

  private file(key: string): string {
    return path.join(this.dir, key.replace(/^sha256:/, '') + '.json');
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const parsed = recordSchema.safeParse(await readJsonFile(this.file(key)));
    // A damaged record is a miss, not a failed build: the step simply runs again.
    return parsed.success && parsed.data.key === key ? parsed.data : undefined;
  }

  async put(record: CacheRecord): Promise<void> {
    await writeFileAtomic(this.file(record.key), JSON.stringify(record));
  }

  async delete(key: string): Promise<void> {
    await fsp.rm(this.file(key), { force: true });
  }
}
