import * as os from 'node:os';
import { Readable } from 'node:stream';
import { canonicalJson } from '../solver/canonical-json';
import type { BlobTee } from './blob-tee';
import { ContentStore } from './content-store';
import { History, ImageConfig } from './image-config';
import { DEFAULT_COMPRESSION } from './layer-compression';
import { layerBlob, type LayerBlobRequest } from './layer-blob';
import { Descriptor, ImageManifest } from './manifest';
import { MediaTypes } from './oci-media-types';
import { Snapshotter } from './snapshotter';
import { LayerIndex } from './layer-index';
import { mapBounded } from './map-bounded';

/** An image whose manifest, config and layers are all in the content store. */
export interface AssembledImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestDescriptor: Descriptor;
  configDescriptor: Descriptor;
  layers: Descriptor[];
}

export interface AssemblerDeps {
  snapshotter: Snapshotter;
  content: ContentStore;
  layers: LayerIndex;
}

/**
 * Turns a build result (a committed snapshot chain) and the frontend's image config into an
 * OCI image in the content store. A snapshot's layer is diffed and compressed once per
 * compression and then reused (base layers keep the blob they were pulled as unless
 * `request.force`; see layerBlob), and every timestamp comes from
 * when a snapshot was made, so the same result always gives the same image digest: after a
 * fully cached rebuild, and after a daemon restart. A layer blob made now also goes to `tee`
 * (a push uploading as it compresses).
 */
export async function assembleImage(
  deps: AssemblerDeps,
  result: string | null,
  image: ImageConfig,
  signal: AbortSignal,
  request: LayerBlobRequest = { compression: DEFAULT_COMPRESSION, force: false },
  tee?: BlobTee,
  /** the manifest's annotations (an output's annotation.* attributes) */
  annotations?: Readonly<Record<string, string>>,
): Promise<AssembledImage> {
  const chain = result === null ? [] : await deps.snapshotter.chain(result);
  // Layers are independent: diff and compress them side by side, two per core for zlib (off
  // the main thread; the walks interleave their file reads): one per core left a core idle
  // whenever the layer count was not a multiple of it (3 layers on 2 cores ran as 2 then 1).
  // zstd runs one per core: each zstd process already uses every core, with a window of its own.
  const perCore = request.compression.type === 'zstd' && !request.lazy ? 1 : 2;
  const records = await mapBounded(chain, perCore * os.availableParallelism(), async (id) => {
    signal.throwIfAborted();
    return layerBlob(deps, id, request, signal, tee);
  });
  const layers: Descriptor[] = records.map((r) => ({ mediaType: ociLayerType(r.mediaType), digest: r.digest, size: r.size }));
  const diffIds = records.map((r) => r.diffId);
  const createdAt: string[] = [];
  for (const id of chain) createdAt.push((await deps.snapshotter.get(id))?.createdAt ?? new Date(0).toISOString());
  const baseLayerCount = Math.min(image.rootfs.diff_ids.length, chain.length);
  const history = datedHistory(image.history ?? [], baseLayerCount, createdAt);
  const created = chain.length > baseLayerCount ? createdAt[createdAt.length - 1] : (image.created ?? createdAt[createdAt.length - 1]);
  const config: ImageConfig = { ...image, created, rootfs: { type: 'layers', diff_ids: diffIds }, history };
  const configBytes = Buffer.from(canonicalJson(config));
  const configInfo = await deps.content.ingest(Readable.from([configBytes]), {}, signal);
  const configDescriptor: Descriptor = { mediaType: MediaTypes.ociConfig, digest: configInfo.digest, size: configInfo.size };
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: configDescriptor, layers, ...(annotations ? { annotations: { ...annotations } } : {}) };
  const manifestBytes = Buffer.from(canonicalJson(manifest));
  const manifestInfo = await deps.content.ingest(Readable.from([manifestBytes]), {}, signal);
  return {
    manifest,
    manifestBytes,
    manifestDescriptor: { mediaType: MediaTypes.ociManifest, digest: manifestInfo.digest, size: manifestInfo.size },
    configDescriptor,
    layers,
  };
}

/**
 * Gives every new history entry the time its layer's snapshot was made; an entry without a
 * layer takes the time of the layer before it. Base entries keep their own times.
 */
function datedHistory(history: History[], baseLayerCount: number, createdAt: string[]): History[] {
  let layer = -1;
  let last = baseLayerCount > 0 ? createdAt[baseLayerCount - 1] : createdAt[0];
  return history.map((entry) => {
    if (!entry.empty_layer) {
      layer++;
      if (layer < createdAt.length) last = createdAt[layer];
    }
    return entry.created !== undefined || last === undefined ? entry : { ...entry, created: last };
  });
}

/** Our manifests are OCI; a Docker layer type names the same bytes under another name. */
function ociLayerType(mediaType: string): string {
  if (mediaType === MediaTypes.dockerLayerGzip) return MediaTypes.ociLayerGzip;
  if (mediaType === MediaTypes.dockerLayer) return MediaTypes.ociLayer;
  return mediaType;
}
