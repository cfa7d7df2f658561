import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from '../../store/atomic-file';

const layerSchema = z.object({
  digest: z.string(),
  size: z.number().int().nonnegative(),
  diffId: z.string(),
  mediaType: z.string(),
}).strict();

/** The compressed blob that holds a committed snapshot's changes. */
export type LayerRecord = z.infer<typeof layerSchema>;

/**
 * Remembers which layer blob belongs to which committed snapshot: the blob a base layer was
 * pulled as, or the one a step's diff was compressed into the first time it was exported.
 * Reusing it keeps the image digest stable across rebuilds and restarts, and lets a push skip
 * blobs the registry already has. Records are written atomically and live as long as their
 * snapshot.
 */
export class LayerIndex {
  private constructor(private readonly dir: string) {}

  static async open(root: string): Promise<LayerIndex> {
    const dir = path.join(root, 'layers');
    await fsp.mkdir(dir, { recursive: true });
    return new LayerIndex(dir);
  }

  private file(snapshotId: string): string {
    if (!/^[A-Za-z0-9_.-]+$/.test(snapshotId)) throw new Error(`Cannot index layer: bad snapshot id ${JSON.stringify(snapshotId)}`);
    return path.join(this.dir, `${snapshotId}.json`);
  }

  async get(snapshotId: string): Promise<LayerRecord | undefined> {
    const parsed = layerSchema.safeParse(await readJsonFile(this.file(snapshotId)));
    return parsed.success ? parsed.data : undefined;
  }

  async put(snapshotId: string, record: LayerRecord): Promise<void> {
    await writeFileAtomic(this.file(snapshotId), JSON.stringify(record));
  }
}
