import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';

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
    let text: string;
    try {
      text = await fsp.readFile(this.file(key), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = recordSchema.safeParse(safeJson(text));
    // A damaged record is a miss, not a failed build: the step simply runs again.
    return parsed.success && parsed.data.key === key ? parsed.data : undefined;
  }

  async put(record: CacheRecord): Promise<void> {
    const target = this.file(record.key);
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await fsp.open(tmp, 'wx');
    try {
      await fh.writeFile(JSON.stringify(record));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, target);
  }

  async delete(key: string): Promise<void> {
    await fsp.rm(this.file(key), { force: true });
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
