import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { BuildError, toBuildError } from '../solver/build-error';
import type { BlobTee } from './blob-tee';
import type { ContentStore } from './content-store';
import { diffToLayer, measureLayer } from './layer-diff';
import { compressionName, compressionOfMediaType, createCompressor, createDecompressor, layerCompression, layerMediaType, type LayerCompression } from './layer-compression';
import type { LayerIndex, LayerRecord } from './layer-index';
import type { Snapshotter } from './snapshotter';

/** What an export asks of its layers: BuildKit's compression, compression-level, force-compression. A plain value. */
export interface LayerBlobRequest {
  compression: LayerCompression;
  /** recompress a pulled layer whose blob has another compression type */
  force: boolean;
  /**
   * Nothing reads the blobs yet (`type=image` without push, no compression asked): a built
   * layer is described uncompressed by its diff ID, and no blob is made or stored; a base
   * layer keeps the blob it came as. A push or a tar export makes blobs when it needs them.
   */
  lazy?: boolean;
  /**
   * rewrite-timestamp with SOURCE_DATE_EPOCH (seconds): a built layer's times later than this
   * become it, in a blob of its own (kept per epoch); base layers stay as they came, as BuildKit
   * leaves the base image's diff IDs alone. Overrides `lazy` for built layers.
   */
  epoch?: number;
}

/** The stores layerBlob reads and writes. */
export interface LayerBlobDeps {
  snapshotter: Pick<Snapshotter, 'upperDir' | 'overlayXattrs'>;
  content: ContentStore;
  layers: LayerIndex;
}

/**
 * The blob of committed snapshot `id` for an export that asks `request`, made at most once per
 * (snapshot, compression, level) and remembered in the layer index.
 *
 * - A snapshot without a blob yet is diffed and compressed as asked; that blob is its primary.
 * - A pulled base layer keeps the blob it came as, whatever was asked, unless `force` is set
 *   and its compression type differs (as BuildKit: force-compression converts by type, a gzip
 *   layer is not recompressed to another gzip level).
 * - A built layer is given exactly the compression and level asked for, so that an image is
 *   a function of the build and the output's options, never of which export came first.
 *
 * A blob made now (a snapshot's first) also goes to `tee` as it is compressed, when given.
 *
 * A second compression of a snapshot is made from its primary blob (decompressed and checked
 * against its diff ID), not from the snapshot again: the tar is the same bytes, so the image
 * config's diff_ids do not change, and decompressing is cheaper than walking the tree.
 */
export async function layerBlob(deps: LayerBlobDeps, id: string, request: LayerBlobRequest, signal: AbortSignal, tee?: BlobTee): Promise<LayerRecord> {
  const primary = await deps.layers.get(id);
  // a pulled layer always has its primary; one without is built
  const built = primary === undefined || primary.source === 'build';
  if (request.epoch !== undefined && built) return rewrittenLayer(deps, id, request.compression, request.epoch, signal, tee);
  if (request.lazy) return unstoredLayer(deps, id, primary, signal);
  if (!primary) {
    const diff = await diffToLayer(deps.snapshotter, id, deps.content, signal, request.compression, tee);
    const record: LayerRecord = { digest: diff.digest, size: diff.size, diffId: diff.diffId, diffSize: diff.diffSize, mediaType: diff.mediaType, source: 'build', compression: request.compression };
    await deps.layers.put(id, record);
    return record;
  }
  if (satisfies(primary, request)) return primary;
  const known = await deps.layers.getVariant(id, request.compression);
  if (known && (await deps.content.info(known.digest))) return known;
  const converted = await recompress(deps.content, primary, request.compression, signal);
  await deps.layers.putVariant(id, request.compression, converted);
  return converted;
}

/**
 * A built layer with its times clamped to `epoch`, made from the snapshot once per (compression,
 * epoch) and remembered: a rebuild with the same epoch reuses the blob. Its diff ID is its own.
 */
async function rewrittenLayer(deps: LayerBlobDeps, id: string, compression: LayerCompression, epoch: number, signal: AbortSignal, tee?: BlobTee): Promise<LayerRecord> {
  const known = await deps.layers.getRewritten(id, compression, epoch);
  if (known && (await deps.content.info(known.digest))) return known;
  const diff = await diffToLayer(deps.snapshotter, id, deps.content, signal, compression, tee, epoch);
  const record: LayerRecord = { digest: diff.digest, size: diff.size, diffId: diff.diffId, diffSize: diff.diffSize, mediaType: diff.mediaType, source: 'build', compression };
  await deps.layers.putRewritten(id, compression, epoch, record);
  return record;
}

/**
 * A `lazy` export's layer: a base layer's blob as it came; a built layer uncompressed (digest =
 * diff ID, size = the tar's), from what a blob record already knows or else from one walk that
 * only hashes and counts. Remembered, so a cached rebuild walks nothing.
 */
async function unstoredLayer(deps: LayerBlobDeps, id: string, primary: LayerRecord | undefined, signal: AbortSignal): Promise<LayerRecord> {
  if (primary && (primary.source ?? 'pull') === 'pull') return primary;
  const uncompressed = layerCompression('uncompressed');
  const view = (diffId: string, diffSize: number): LayerRecord => ({ digest: diffId, size: diffSize, diffId, diffSize, mediaType: layerMediaType(uncompressed), source: 'build', compression: uncompressed });
  if (primary?.diffSize !== undefined) return view(primary.diffId, primary.diffSize);
  const known = await deps.layers.getUnstored(id);
  if (known) return known;
  // one walk per layer: an export joins the measure a build started early (premeasureLayer)
  const upper = await deps.snapshotter.upperDir(id);
  for (;;) {
    let measuring = inFlight.get(upper);
    if (measuring === undefined) {
      measuring = (async () => {
        const measured = await measureLayer(deps.snapshotter, id, signal);
        const record = view(measured.diffId, measured.diffSize);
        await deps.layers.putUnstored(id, record);
        return record;
      })().finally(() => inFlight.delete(upper));
      inFlight.set(upper, measuring);
    }
    try {
      return await measuring;
    } catch (err) {
      // another build's measure, stopped by that build's cancel: measure again for this one
      if (signal.aborted || toBuildError(err).code !== 'cancelled') throw err;
    }
  }
}

/** Layer measures under way, by the snapshot's upper dir (unique across daemons in one process). */
const inFlight = new Map<string, Promise<LayerRecord>>();

/**
 * Measures committed snapshot `id`'s layer now, for a `type=image` export without push (see
 * LayerBlobRequest.lazy) that will want it: started as soon as a step of the result's chain is
 * committed, it runs while later steps do (a RUN's process, another stage), and the export finds
 * it done or joins it. Never fails: the export measures again and reports what went wrong.
 */
export function premeasureLayer(deps: LayerBlobDeps, id: string, signal: AbortSignal): void {
  void layerBlob(deps, id, { compression: layerCompression('uncompressed'), force: false, lazy: true }, signal).catch(() => undefined);
}

function satisfies(primary: LayerRecord, request: LayerBlobRequest): boolean {
  const type = primary.compression?.type ?? compressionOfMediaType(primary.mediaType);
  // A blob we cannot convert (a foreign layer, an unknown type) is used as it is.
  if (type === undefined) return true;
  if ((primary.source ?? 'pull') === 'pull') return !request.force || type === request.compression.type;
  return primary.compression !== undefined && compressionName(primary.compression) === compressionName(request.compression);
}

/**
 * `from`'s blob in another compression: decompressed, hashed (it must still be the tar its diff
 * ID names) and compressed again, streamed from store to store. A failure stores nothing.
 */
async function recompress(content: ContentStore, from: LayerRecord, to: LayerCompression, signal: AbortSignal): Promise<LayerRecord> {
  const type = from.compression?.type ?? compressionOfMediaType(from.mediaType);
  if (type === undefined) throw new BuildError('internal', `Cannot recompress layer ${from.digest}: unknown media type ${from.mediaType}`);
  const hash = createHash('sha256');
  let diffSize = 0;
  const source = await content.read(from.digest);
  // Made only now, each straight into the pipeline: a compressor failing to start must find
  // its error handled.
  const compressor = createCompressor(to);
  const converting = pipeline(
    source,
    createDecompressor(type),
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        diffSize += chunk.length;
        yield chunk;
      }
    },
    compressor,
    { signal },
  );
  converting.catch(() => undefined);
  const ingesting = content.ingest(compressor, {}, signal);
  let blob;
  try {
    [blob] = await Promise.all([ingesting, converting]);
  } catch (err) {
    compressor.destroy();
    source.destroy();
    // The store removes its partial file as it settles: no half blob outlives the failure.
    await Promise.allSettled([ingesting, converting]);
    // The ingest side only saw its input end early; the conversion's error is the cause.
    throw (await converting.then(() => err, (cause: unknown) => cause));
  }
  const diffId = 'sha256:' + hash.digest('hex');
  if (diffId !== from.diffId) {
    // Its blob stays unreferenced (another record could share its bytes); nothing names it.
    throw new BuildError('internal', `Cannot recompress layer ${from.digest}: it decompresses to ${diffId}, its diff ID is ${from.diffId}`);
  }
  return { digest: blob.digest, size: blob.size, diffId, diffSize, mediaType: layerMediaType(to), source: 'build', compression: to };
}
