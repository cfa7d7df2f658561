import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { JsonRecordStore } from './json-record-store';
import { compressionName, type LayerCompression } from './layer-compression';

const compressionSchema = z.object({
  type: z.enum(['gzip', 'zstd', 'uncompressed']),
  level: z.number().int().optional(),
}).strict();

const layerSchema = z.object({
  digest: z.string(),
  size: z.number().int().nonnegative(),
  diffId: z.string(),
  mediaType: z.string(),
  /**
   * `pull`: the blob a base layer came as; `build`: one buildd made from the snapshot (or from
   * another of its blobs). Records written before this field existed read as `pull`: their
   * blob is reused as it is, as BuildKit reuses a layer's first blob.
   */
  source: z.enum(['pull', 'build']).optional(),
  /** set on blobs buildd compressed; a pulled blob's compression is its media type's */
  compression: compressionSchema.optional(),
  /** bytes of the uncompressed tar, where known (records of blobs buildd made) */
  diffSize: z.number().int().nonnegative().optional(),
}).strict();

/** never a compression's name (see compressionName), so never a variant's key */
const UNSTORED = 'unstored';

/** A compressed blob that holds a committed snapshot's changes. */
export type LayerRecord = z.infer<typeof layerSchema>;

/**
 * Remembers which layer blobs belong to which committed snapshot. A snapshot's first blob (its
 * "primary": the blob a base layer was pulled as, or the one a step's diff was compressed into
 * the first time it was exported) is kept under the snapshot's id; blobs of the same tar in
 * other compressions (an export with compression=zstd, or another level) under the snapshot's
 * id and the compression. Reusing them keeps the image digest stable across rebuilds and
 * restarts, and lets a push skip blobs the registry already has. Records are written atomically
 * and live as long as their snapshot.
 */
export class LayerIndex {
  private constructor(private readonly records: JsonRecordStore<LayerRecord>) {}

  static async open(root: string): Promise<LayerIndex> {
    return new LayerIndex(await JsonRecordStore.open(path.join(root, 'layers'), layerSchema, (key) => {
      const [id, variant] = key.split('/', 2) as [string, string | undefined];
      if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new BuildError('internal', `Cannot index layer: bad snapshot id ${JSON.stringify(id)}`);
      // '@' never occurs in a snapshot id: a variant's file cannot collide with a primary's.
      return variant === undefined ? id : `${id}@${variant}`;
    }));
  }

  /** The snapshot's primary blob. */
  get(snapshotId: string): Promise<LayerRecord | undefined> {
    return this.records.get(snapshotId);
  }

  put(snapshotId: string, record: LayerRecord): Promise<void> {
    return this.records.put(snapshotId, record);
  }

  /** The snapshot's blob in `compression`, other than its primary. */
  getVariant(snapshotId: string, compression: LayerCompression): Promise<LayerRecord | undefined> {
    return this.records.get(`${snapshotId}/${compressionName(compression)}`);
  }

  putVariant(snapshotId: string, compression: LayerCompression, record: LayerRecord): Promise<void> {
    return this.records.put(`${snapshotId}/${compressionName(compression)}`, record);
  }

  /** The snapshot's blob in `compression` with its times clamped to `epoch` (rewrite-timestamp). */
  getRewritten(snapshotId: string, compression: LayerCompression, epoch: number): Promise<LayerRecord | undefined> {
    return this.records.get(`${snapshotId}/${compressionName(compression)}-t${epoch}`);
  }

  putRewritten(snapshotId: string, compression: LayerCompression, epoch: number, record: LayerRecord): Promise<void> {
    return this.records.put(`${snapshotId}/${compressionName(compression)}-t${epoch}`, record);
  }

  /**
   * The snapshot's layer described uncompressed (digest = diff ID) with no blob in the content
   * store: what an image that no push or tar has read yet refers to (see layerBlob's `lazy`).
   */
  getUnstored(snapshotId: string): Promise<LayerRecord | undefined> {
    return this.records.get(`${snapshotId}/${UNSTORED}`);
  }

  putUnstored(snapshotId: string, record: LayerRecord): Promise<void> {
    return this.records.put(`${snapshotId}/${UNSTORED}`, record);
  }
}
