import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { readJsonFile, writeFileAtomic } from './atomic-file';

/**
 * Small JSON records, one file each under a directory, validated on read and written
 * atomically (a record is whole or absent after a crash). A damaged or foreign record reads
 * as absent: records here are caches and indexes, so a miss costs work, never a build.
 * Lifecycle: opened once per daemon; a record lives until it is overwritten or deleted.
 */
export class JsonRecordStore<T> {
  private constructor(
    private readonly dir: string,
    private readonly schema: z.ZodType<T>,
    private readonly fileName: (id: string) => string,
  ) {}

  /** `fileName` maps an id to a safe file name (no `/`); it is the caller's namespace. */
  static async open<T>(dir: string, schema: z.ZodType<T>, fileName: (id: string) => string): Promise<JsonRecordStore<T>> {
    await fsp.mkdir(dir, { recursive: true });
    return new JsonRecordStore(dir, schema, fileName);
  }

  private file(id: string): string {
    const name = this.fileName(id);
    if (name.includes('/') || name.startsWith('.')) throw new BuildError('internal', `Cannot name a record ${JSON.stringify(name)}: not a plain file name`);
    return path.join(this.dir, `${name}.json`);
  }

  async get(id: string): Promise<T | undefined> {
    const parsed = this.schema.safeParse(await readJsonFile(this.file(id)));
    return parsed.success ? parsed.data : undefined;
  }

  async put(id: string, record: T): Promise<void> {
    await writeFileAtomic(this.file(id), JSON.stringify(record));
  }

  async delete(id: string): Promise<void> {
    await fsp.rm(this.file(id), { force: true });
  }
}
