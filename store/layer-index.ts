import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { compressionName, type LayerCompression } from './layer-compression';
import { MetaDb } from './meta-db';

const compressionSchema = z.object({
  type: z.enum(['gzip', 'zstd', 'uncompressed']),
  level: z.number().int().optional(),
}).strict();

/** A layer record as older buildd versions kept it in JSON (read by the JSON import). */
export const layerSchema = z.object({
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
 * restarts, and lets a push skip blobs the registry already has. Rows of the metadata
 * database's `layers` table (variant '' the primary); they live as long as their snapshot.
 * Lifecycle: opened once per daemon over its MetaDb.
 */
export class LayerIndex {
  private constructor(private readonly meta: MetaDb) {}

  /** Over the daemon's database. */
  static on(meta: MetaDb): LayerIndex {
    return new LayerIndex(meta);
  }

  /** Over a database of its own at `<root>/meta.db` (tests, tools). */
  static async open(root: string): Promise<LayerIndex> {
    return new LayerIndex(MetaDb.open(root));
  }

  /** The snapshot's primary blob. */
  get(snapshotId: string): Promise<LayerRecord | undefined> {
    return this.read(snapshotId, PRIMARY);
  }

  put(snapshotId: string, record: LayerRecord): Promise<void> {
    return this.write(snapshotId, PRIMARY, record);
  }

  /** {@link put}, synchronously: for the transaction of the snapshot's commit (CommitOptions.within). */
  putNow(snapshotId: string, record: LayerRecord): void {
    this.writeRow(snapshotId, PRIMARY, record);
  }

  /** The snapshot's blob in `compression`, other than its primary. */
  getVariant(snapshotId: string, compression: LayerCompression): Promise<LayerRecord | undefined> {
    return this.read(snapshotId, compressionName(compression));
  }

  putVariant(snapshotId: string, compression: LayerCompression, record: LayerRecord): Promise<void> {
    return this.write(snapshotId, compressionName(compression), record);
  }

  /** The snapshot's blob in `compression` with its times clamped to `epoch` (rewrite-timestamp). */
  getRewritten(snapshotId: string, compression: LayerCompression, epoch: number): Promise<LayerRecord | undefined> {
    return this.read(snapshotId, `${compressionName(compression)}-t${epoch}`);
  }

  putRewritten(snapshotId: string, compression: LayerCompression, epoch: number, record: LayerRecord): Promise<void> {
    return this.write(snapshotId, `${compressionName(compression)}-t${epoch}`, record);
  }

  /**
   * The snapshot's layer described uncompressed (digest = diff ID) with no blob in the content
   * store: what an image that no push or tar has read yet refers to (see layerBlob's `lazy`).
   */
  getUnstored(snapshotId: string): Promise<LayerRecord | undefined> {
    return this.read(snapshotId, UNSTORED);
  }

  putUnstored(snapshotId: string, record: LayerRecord): Promise<void> {
    return this.write(snapshotId, UNSTORED, record);
  }

  /**
   * A record under its snapshot and variant as stored ('' the primary, else what follows `@`
   * in an older buildd's file name), synchronously: for the JSON import's transaction.
   */
  writeRaw(snapshotId: string, variant: string, record: LayerRecord): void {
    this.writeRow(snapshotId, variant, record);
  }

  private async read(snapshot: string, variant: string): Promise<LayerRecord | undefined> {
    const row = this.meta.db.prepare('SELECT * FROM layers WHERE snapshot = ? AND variant = ?').get(snapshot, variant) as LayerRow | undefined;
    if (row === undefined) return undefined;
    const record: LayerRecord = { digest: row.digest, size: row.size, diffId: row.diff_id, mediaType: row.media_type };
    if (row.source !== null) record.source = row.source;
    if (row.compression !== null) record.compression = row.compression_level === null ? { type: row.compression } : { type: row.compression, level: row.compression_level };
    if (row.diff_size !== null) record.diffSize = row.diff_size;
    return record;
  }

  private async write(snapshot: string, variant: string, r: LayerRecord): Promise<void> {
    this.writeRow(snapshot, variant, r);
  }

  private writeRow(snapshot: string, variant: string, r: LayerRecord): void {
    if (!/^[A-Za-z0-9_-]+$/.test(snapshot)) throw new BuildError('internal', `Cannot index layer: bad snapshot id ${JSON.stringify(snapshot)}`);
    this.meta.db
      .prepare(
        `INSERT OR REPLACE INTO layers (snapshot, variant, digest, size, diff_id, media_type, source, compression, compression_level, diff_size)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(snapshot, variant, r.digest, r.size, r.diffId, r.mediaType, r.source ?? null, r.compression?.type ?? null, r.compression?.level ?? null, r.diffSize ?? null);
  }
}

/** the primary blob's variant */
const PRIMARY = '';

interface LayerRow {
  digest: string;
  size: number;
  diff_id: string;
  media_type: string;
  source: 'pull' | 'build' | null;
  compression: 'gzip' | 'zstd' | 'uncompressed' | null;
  compression_level: number | null;
  diff_size: number | null;
}
