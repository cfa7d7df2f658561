import * as os from 'node:os';
import { Readable } from 'node:stream';
import { canonicalJson } from '../../solver/canonical-json';
import { BuildError } from '../../solver/build-error';
import { CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_KEY, MAX_CACHE_CONFIG_BYTES, MAX_CACHE_LAYERS, MAX_CACHE_RECORDS, type CacheConfig, type CacheLayer, type CacheRecordEntry } from '../../solver/cache-io/cache-config';
import type { SolvedStep } from '../../solver/solver';
import type { ContentStore } from '../../store/content-store';
import { layerBlob, type LayerBlobRequest } from '../../store/layer-blob';
import type { LayerIndex, LayerRecord } from '../../store/layer-index';
import type { Descriptor, ImageManifest } from '../../store/manifest';
import type { MadeLayers } from '../../store/image-assembler';
import type { BlobFetch } from './cache-loader';
import type { ImportedLayer } from './imported-cache';
import { mapBounded } from '../../store/map-bounded';
import { MediaTypes, ociLayerType } from '../../store/oci-media-types';
import type { Snapshotter } from '../../store/snapshotter';

/** The stores a cache export reads layers from and writes its blobs to. */
export interface CacheExportDeps {
  snapshotter: Snapshotter;
  content: ContentStore;
  layers: LayerIndex;
}

/** A cache manifest with every blob it names in the content store, ready to push. */
export interface ExportedCache {
  config: CacheConfig;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  /** the config's and the layers' descriptors: what a push uploads */
  blobs: Descriptor[];
  /** blobs of imported records that were never downloaded: not in the content store */
  remote: RemoteBlob[];
}

/** A blob an export names but only an import holds. */
export interface RemoteBlob {
  blob: Descriptor;
  origin: { ref: string; fetch: BlobFetch };
}

/**
 * The cache of one build as a cache manifest (docs/cache-manifest.md). `mode=max`: every
 * cacheable step with a result on disk; `mode=min`: only those whose filesystem the result is
 * built on (the final stage's steps and its base), as BuildKit's min exports the result's
 * layers only. Each layer is the blob an image export of it uses (made now when it has none),
 * so an importer's images have the same layer digests.
 */
export async function exportCache(
  deps: CacheExportDeps,
  steps: readonly SolvedStep[],
  imported: readonly ImportedStep[],
  /** the build's results (one per platform): mode=min keeps the steps their layers are */
  results: ReadonlyArray<string | null>,
  mode: 'min' | 'max',
  request: LayerBlobRequest,
  signal: AbortSignal,
): Promise<ExportedCache> {
  const finalChains = await Promise.all(results.map((r) => (r === null ? [] : deps.snapshotter.chain(r))));
  const byKey = new Map<string, { description: string; chain: string[] }>();
  for (const step of steps) {
    if (step.result.kind !== 'snapshot' || byKey.has(step.key)) continue;
    const chain = step.result.id === null ? [] : await deps.snapshotter.chain(step.result.id);
    if (mode === 'min' && !finalChains.some((finalChain) => chain.every((id, i) => finalChain[i] === id))) continue;
    byKey.set(step.key, { description: step.description, chain });
  }
  const snapshots = [...new Set([...byKey.values()].flatMap((r) => r.chain))];
  // layers are independent: diffed and compressed side by side, as an image export does
  const records = await mapBounded(snapshots, 2 * os.availableParallelism(), async (id) => {
    signal.throwIfAborted();
    return layerBlob(deps, id, request, signal);
  });
  const blobOf = new Map<string, LayerRecord>(snapshots.map((id, i) => [id, records[i]]));
  const layers: CacheLayer[] = [];
  const descriptors: Descriptor[] = [];
  const indexOf = new Map<string, number>();
  for (const record of records) {
    if (indexOf.has(record.digest)) continue;
    indexOf.set(record.digest, layers.length);
    layers.push(cacheLayer(record));
    descriptors.push({ mediaType: ociLayerType(record.mediaType), digest: record.digest, size: record.size });
  }
  const createdAt = new Map<string, string>();
  for (const id of snapshots) createdAt.set(id, (await deps.snapshotter.get(id))?.createdAt ?? new Date(0).toISOString());
  const entries: CacheRecordEntry[] = [...byKey.entries()].map(([key, r]) => ({
    key,
    chain: r.chain.map((id) => ({ layer: indexOf.get((blobOf.get(id) as LayerRecord).digest) as number, createdAt: createdAt.get(id) as string })),
    description: r.description.slice(0, 1024),
  }));
  // Steps found in an import and never loaded (under a hit) stay in the cache: their blobs are
  // the import's, fetched at push time only where the destination lacks them (see `remote`).
  const finalLayerLists = finalChains.map((finalChain) => finalChain.map((id) => ({ diffId: blobOf.get(id)?.diffId, createdAt: createdAt.get(id) })));
  const remote: RemoteBlob[] = [];
  for (const step of imported) {
    if (byKey.has(step.key)) continue;
    if (mode === 'min' && !finalLayerLists.some((finalLayers) => step.chain.every((e, i) => finalLayers[i]?.diffId === e.layer.diffId && finalLayers[i]?.createdAt === e.createdAt))) continue;
    byKey.set(step.key, { description: step.description, chain: [] });
    const chain = step.chain.map((e) => {
      let at = indexOf.get(e.blob.digest);
      if (at === undefined) {
        at = layers.length;
        indexOf.set(e.blob.digest, at);
        layers.push(e.layer);
        descriptors.push({ mediaType: e.blob.mediaType, digest: e.blob.digest, size: e.blob.size });
        remote.push({ blob: e.blob, origin: step.origin });
      }
      return { layer: at, createdAt: e.createdAt };
    });
    entries.push({ key: step.key, chain, description: step.description.slice(0, 1024) });
  }
  entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const config: CacheConfig = { schemaVersion: 1, layers, records: entries };
  const configBytes = Buffer.from(canonicalJson(config));
  // what an import would refuse is not written: say so now, with what to do
  if (layers.length > MAX_CACHE_LAYERS || entries.length > MAX_CACHE_RECORDS || configBytes.length > MAX_CACHE_CONFIG_BYTES) {
    throw new BuildError('invalid-argument', `Cannot export cache: ${layers.length} layers and ${entries.length} records (${configBytes.length} bytes of config) are over the ${MAX_CACHE_LAYERS} layers, ${MAX_CACHE_RECORDS} records or ${MAX_CACHE_CONFIG_BYTES} bytes a cache may hold${mode === 'max' ? ' (mode=min holds fewer)' : ''}`);
  }
  const configInfo = await deps.content.ingest(Readable.from([configBytes]), {}, signal);
  const configDescriptor: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: configInfo.digest, size: configInfo.size };
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: configDescriptor, layers: descriptors };
  const manifestBytes = Buffer.from(canonicalJson(manifest));
  return { config, manifest, manifestBytes, blobs: [configDescriptor, ...descriptors], remote };
}

/** A step an import holds, with its record's layers (see ImportedCache.chainOf). */
export interface ImportedStep {
  key: string;
  description: string;
  chain: readonly ImportedLayer[];
  /** the import's ref, and how to download a blob of it */
  origin: { ref: string; fetch: BlobFetch };
}

/** A layer of the cache as its record in the layer index says it was made. */
function cacheLayer(record: LayerRecord): CacheLayer {
  const origin = (record.source ?? 'pull') === 'build' ? 'build' : 'pull';
  return { digest: record.digest, diffId: record.diffId, origin, ...(origin === 'build' && record.compression ? { compression: record.compression } : {}) };
}

/**
 * The inline cache of an image (--export-cache type=inline), as config members: under
 * INLINE_CACHE_KEY, a cache config whose layers are the image's own, position for position,
 * holding the records whose filesystem the image is built on (an inline cache is always
 * mode=min, as BuildKit's).
 */
export async function inlineCache(snapshotter: Snapshotter, steps: readonly SolvedStep[], imported: readonly ImportedStep[], made: MadeLayers): Promise<Record<string, unknown>> {
  const records: CacheRecordEntry[] = [];
  const seen = new Set<string>();
  // a step found in an import and never loaded (it lies under a hit) is still the image's: its
  // chain names the image's first layers by diff ID and creation time
  for (const step of imported) {
    const chain = step.chain;
    if (seen.has(step.key) || chain.length > made.chain.length) continue;
    if (!chain.every((e, i) => made.layers[i].diffId === e.layer.diffId && made.createdAt[i] === e.createdAt)) continue;
    seen.add(step.key);
    records.push({ key: step.key, chain: chain.map((_, i) => ({ layer: i, createdAt: made.createdAt[i] })), description: step.description.slice(0, 1024) });
  }
  for (const step of steps) {
    if (step.result.kind !== 'snapshot' || seen.has(step.key)) continue;
    const chain = step.result.id === null ? [] : await snapshotter.chain(step.result.id);
    if (!chain.every((id, i) => made.chain[i] === id)) continue;
    seen.add(step.key);
    records.push({ key: step.key, chain: chain.map((_, i) => ({ layer: i, createdAt: made.createdAt[i] })), description: step.description.slice(0, 1024) });
  }
  records.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const config: CacheConfig = { schemaVersion: 1, layers: made.layers.map(cacheLayer), records };
  return { [INLINE_CACHE_KEY]: config };
}
