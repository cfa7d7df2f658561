import * as os from 'node:os';
import { Readable } from 'node:stream';
import { BuildError } from '../solver/build-error';
import { canonicalJson } from '../solver/canonical-json';
import type { BlobTee } from './blob-tee';
import { ContentStore } from './content-store';
import { History, ImageConfig } from './image-config';
import { DEFAULT_COMPRESSION } from './layer-compression';
import { layerBlob, type LayerBlobRequest } from './layer-blob';
import { Descriptor, ImageManifest } from './manifest';
import { MediaTypes, ociLayerType } from './oci-media-types';
import { Snapshotter } from './snapshotter';
import { LayerIndex, type LayerRecord } from './layer-index';
import { mapBounded } from './map-bounded';

/** An image whose manifest, config and layers are all in the content store. */
export interface AssembledImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestDescriptor: Descriptor;
  configDescriptor: Descriptor;
  layers: Descriptor[];
}

/** How an export wants its image made beyond its layers' compression; every field optional. */
export interface AssembleOptions {
  /** a layer blob made now also goes here (a push uploading as it compresses) */
  tee?: BlobTee;
  /** the manifest's annotations (an output's annotation.* attributes) */
  annotations?: Readonly<Record<string, string>>;
  /**
   * SOURCE_DATE_EPOCH, in seconds: the config's `created` and the history this build added are
   * clamped to it, as BuildKit's exporter does (the first `baseHistory` entries, the base
   * image's, keep their times).
   */
  epoch?: number;
  baseHistory?: number;
  /** Docker's schema 2 media types for the manifest, config and layers instead of OCI's (oci-mediatypes=false) */
  dockerTypes?: boolean;
  /**
   * Members added to the config once its layers are known (an inline cache describing them):
   * given the snapshot chain, each snapshot's layer record and creation time, in order.
   */
  configExtras?: (made: MadeLayers) => Promise<Record<string, unknown>>;
}

/** The layers an image was assembled from, base first (see AssembleOptions.configExtras). */
export interface MadeLayers {
  chain: readonly string[];
  layers: readonly LayerRecord[];
  createdAt: readonly string[];
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
 * fully cached rebuild, and after a daemon restart; with an `epoch`, also across rebuilds on
 * other days (see AssembleOptions.epoch and LayerBlobRequest.epoch).
 */
export async function assembleImage(
  deps: AssemblerDeps,
  result: string | null,
  image: ImageConfig,
  signal: AbortSignal,
  request: LayerBlobRequest = { compression: DEFAULT_COMPRESSION, force: false },
  opts: AssembleOptions = {},
): Promise<AssembledImage> {
  const { tee, annotations, epoch, baseHistory = 0, dockerTypes = false } = opts;
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
  const layers: Descriptor[] = records.map((r) => ({ mediaType: dockerTypes ? dockerLayerType(r.mediaType, r.digest) : ociLayerType(r.mediaType), digest: r.digest, size: r.size }));
  const diffIds = records.map((r) => r.diffId);
  const createdAt: string[] = [];
  for (const id of chain) createdAt.push((await deps.snapshotter.get(id))?.createdAt ?? new Date(0).toISOString());
  const baseLayerCount = Math.min(image.rootfs.diff_ids.length, chain.length);
  let history = datedHistory(image.history ?? [], baseLayerCount, createdAt, baseHistory);
  let created = chain.length > baseLayerCount ? createdAt[createdAt.length - 1] : (image.created ?? createdAt[createdAt.length - 1]);
  if (epoch !== undefined) {
    history = clampedHistory(history, baseHistory, epoch);
    created = clampTime(created, epoch) ?? created;
  }
  const extras = opts.configExtras ? await opts.configExtras({ chain, layers: records, createdAt }) : {};
  const config: ImageConfig = { ...image, ...extras, created, rootfs: { type: 'layers', diff_ids: diffIds }, history };
  const configBytes = Buffer.from(canonicalJson(config));
  const configInfo = await deps.content.ingest(Readable.from([configBytes]), {}, signal);
  const configDescriptor: Descriptor = { mediaType: dockerTypes ? MediaTypes.dockerConfig : MediaTypes.ociConfig, digest: configInfo.digest, size: configInfo.size };
  const manifestType = dockerTypes ? MediaTypes.dockerManifest : MediaTypes.ociManifest;
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: manifestType, config: configDescriptor, layers, ...(annotations ? { annotations: { ...annotations } } : {}) };
  const manifestBytes = Buffer.from(canonicalJson(manifest));
  const manifestInfo = await deps.content.ingest(Readable.from([manifestBytes]), {}, signal);
  return {
    manifest,
    manifestBytes,
    manifestDescriptor: { mediaType: manifestType, digest: manifestInfo.digest, size: manifestInfo.size },
    configDescriptor,
    layers,
  };
}

/**
 * Gives every new history entry the time its layer's snapshot was made; an entry without a
 * layer takes the time of the layer before it. The first `baseHistory` entries are the base
 * image's and stay as they came (with no time when they had none: a pull's time would make
 * the image depend on when the base was pulled).
 */
function datedHistory(history: History[], baseLayerCount: number, createdAt: string[], baseHistory: number): History[] {
  let layer = -1;
  let last = baseLayerCount > 0 ? createdAt[baseLayerCount - 1] : createdAt[0];
  return history.map((entry, i) => {
    if (!entry.empty_layer) {
      layer++;
      if (layer < createdAt.length) last = createdAt[layer];
    }
    return i < baseHistory || entry.created !== undefined || last === undefined ? entry : { ...entry, created: last };
  });
}

/** An RFC 3339 time no later than `epoch` (seconds); undefined stays undefined, as BuildKit leaves a missing time. */
function clampTime(time: string | undefined, epoch: number): string | undefined {
  const at = epochTime(epoch);
  return time === undefined || Date.parse(time) > Date.parse(at) ? at : time;
}

/** The epoch as BuildKit's Go writes it: RFC 3339 in UTC, whole seconds. */
export function epochTime(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * BuildKit's history clamp: the base image's entries keep their times; in every entry after
 * them, a time later than the epoch, or none, becomes the epoch.
 */
function clampedHistory(history: History[], baseHistory: number, epoch: number): History[] {
  return history.map((entry, i) => (i < baseHistory ? entry : { ...entry, created: clampTime(entry.created, epoch) ?? epochTime(epoch) }));
}

/** The Docker schema 2 name of a layer type; zstd has none (an OCI-only type). */
function dockerLayerType(mediaType: string, digest: string): string {
  if (mediaType === MediaTypes.ociLayerGzip) return MediaTypes.dockerLayerGzip;
  if (mediaType === MediaTypes.ociLayer) return MediaTypes.dockerLayer;
  if (mediaType.startsWith('application/vnd.docker.')) return mediaType;
  throw new BuildError('invalid-argument', `Cannot write layer ${digest} with Docker media types: ${mediaType} has no Docker name (use oci-mediatypes=true)`);
}
