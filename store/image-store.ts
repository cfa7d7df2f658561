import { z } from 'zod';
import { descriptorSchema, type Descriptor } from './manifest';
import { MetaDb } from './meta-db';

/** An image record as older buildd versions kept it in JSON (read by the JSON import). */
export const imageRecordSchema = z.object({ name: z.string(), target: descriptorSchema, updatedAt: z.string() }).strict();
/** A named image kept by the daemon: its name and the manifest it points at. */
export type ImageRecord = z.infer<typeof imageRecordSchema>;

/**
 * Names of images built with `--output type=image` (pushed or not), containerd's image store
 * in miniature: the `images` table of the metadata database. A record lives until it is
 * overwritten by the next build of that name. Lifecycle: opened once per daemon over its MetaDb.
 */
export class ImageStore {
  private constructor(private readonly meta: MetaDb) {}

  /** Over the daemon's database. */
  static on(meta: MetaDb): ImageStore {
    return new ImageStore(meta);
  }

  /** Over a database of its own at `<root>/meta.db` (tests, tools). */
  static async open(root: string): Promise<ImageStore> {
    return new ImageStore(MetaDb.open(root));
  }

  async put(name: string, target: Descriptor): Promise<void> {
    this.write({ name, target, updatedAt: new Date().toISOString() });
  }

  /** A whole record, synchronously: for a caller inside a transaction (the JSON import). */
  write({ name, target, updatedAt }: ImageRecord): void {
    this.meta.db
      .prepare('INSERT OR REPLACE INTO images (name, digest, media_type, size, descriptor, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(name, target.digest, target.mediaType, target.size, JSON.stringify(target), updatedAt);
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    const row = this.meta.db.prepare('SELECT name, descriptor, updated_at FROM images WHERE name = ?').get(name) as { name: string; descriptor: string; updated_at: string } | undefined;
    if (row === undefined) return undefined;
    // the descriptor is our own JSON, checked all the same: a damaged row reads as no image
    const target = descriptorSchema.safeParse(safeJson(row.descriptor));
    return target.success ? { name: row.name, target: target.data, updatedAt: row.updated_at } : undefined;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
