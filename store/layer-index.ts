import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { JsonRecordStore } from './json-record-store';

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
  private constructor(private readonly records: JsonRecordStore<LayerRecord>) {}

  static async open(root: string): Promise<LayerIndex> {
    return new LayerIndex(await JsonRecordStore.open(path.join(root, 'layers'), layerSchema, (id) => {
      if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new BuildError('internal', `Cannot index layer: bad snapshot id ${JSON.stringify(id)}`);
      return id;
    }));
  }

  get(snapshotId: string): Promise<LayerRecord | undefined> {
    return this.records.get(snapshotId);
  }

  put(snapshotId: string, record: LayerRecord): Promise<void> {
    return this.records.put(snapshotId, record);
  }
}
