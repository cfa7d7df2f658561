import { BuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { BUILDKIT_CACHE_CONFIG_MEDIA_TYPE, CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_KEY, MAX_CACHE_CONFIG_BYTES, cacheConfigSchema, type CacheConfig } from '../../solver/cache-io/cache-config';
import type { ContentStore } from '../../store/content-store';
import { parseImageRef } from '../../store/image-ref';
import { imageIndexSchema, imageManifestSchema, type Descriptor } from '../../store/manifest';
import { INDEX_TYPES, MediaTypes } from '../../store/oci-media-types';
import { compressionOfMediaType } from '../../store/layer-compression';
import type { RegistryClient } from '../../store/registry-client';
import type { ExportedCache } from './cache-export';
import type { ImportedIndex } from './cache-loader';


/** Pushes a cache manifest and its blobs to `ref` (blobs the registry has are not sent again); returns the manifest's digest. */
export function pushCache(registry: RegistryClient, ref: string, cache: ExportedCache, content: ContentStore, signal: AbortSignal): Promise<string> {
  return registry.push(ref, { manifest: cache.manifestBytes, mediaType: MediaTypes.ociManifest, blobs: cache.blobs, store: content }, signal);
}

/**
 * The indexes of the cache at `ref`: a cache manifest (type=registry), or an image whose config
 * carries an inline cache (type=inline), or an image index (a multi-platform build's) of such
 * images, one index per platform that has one, as BuildKit reads every manifest of an index;
 * its layers are fetched only when a record is loaded. Undefined when `ref` does not exist (a
 * first build has no cache yet); an error for anything that is not a buildd cache, naming what
 * it is.
 */
export async function openRegistryCache(registry: RegistryClient, ref: string, content: ContentStore, signal: AbortSignal): Promise<ImportedIndex[] | undefined> {
  let got;
  try {
    got = await registry.fetchManifest(ref, signal);
  } catch (err) {
    if (err instanceof BuildError && err.code === 'not-found') return undefined;
    throw err;
  }
  if (INDEX_TYPES.includes(got.mediaType)) return openIndexCaches(registry, ref, got.json, content, signal);
  return [await openManifestCache(registry, ref, got, content, signal)];
}

/** The most images of one index whose inline caches an import reads (one per platform). */
const MAX_INDEX_CACHES = 64;

/** Each platform's inline cache of an image index; platforms without one are passed over. */
async function openIndexCaches(registry: RegistryClient, ref: string, json: unknown, content: ContentStore, signal: AbortSignal): Promise<ImportedIndex[]> {
  const index = imageIndexSchema.safeParse(json);
  if (!index.success) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: malformed image index: ${describeZodError(index.error) ?? 'invalid'}`);
  // BuildKit's own registry cache is an index of its layers and its cache config
  if (index.data.manifests.some((m) => m.mediaType === BUILDKIT_CACHE_CONFIG_MEDIA_TYPE)) {
    throw new BuildError('invalid-argument', `Cannot import cache ${ref}: it is BuildKit's cache (${BUILDKIT_CACHE_CONFIG_MEDIA_TYPE}), whose keys never match buildd's; export it again with buildd`);
  }
  const images = index.data.manifests.filter((m) => m.mediaType === MediaTypes.ociManifest || m.mediaType === MediaTypes.dockerManifest);
  if (images.length > MAX_INDEX_CACHES) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: its index names ${images.length} images, over the ${MAX_INDEX_CACHES} a cache import reads`);
  const base = parseImageRef(ref).withoutTag();
  const found: ImportedIndex[] = [];
  let firstError: unknown;
  for (const m of images) {
    const child = base.withDigest(m.digest).toString();
    try {
      const got = await registry.fetchManifest(child, signal);
      found.push(await openManifestCache(registry, child, got, content, signal));
    } catch (err) {
      signal.throwIfAborted();
      firstError ??= err;
    }
  }
  if (found.length === 0) throw firstError ?? new BuildError('invalid-argument', `Cannot import cache ${ref}: its index names no image`);
  return found;
}

async function openManifestCache(registry: RegistryClient, ref: string, got: { json: unknown; mediaType: string }, content: ContentStore, signal: AbortSignal): Promise<ImportedIndex> {
  const parsed = imageManifestSchema.safeParse(got.json);
  if (!parsed.success) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: it is not a cache manifest (${got.mediaType}: ${describeZodError(parsed.error) ?? 'invalid'})`);
  const manifest = parsed.data;
  const configType = manifest.config.mediaType;
  if (configType === BUILDKIT_CACHE_CONFIG_MEDIA_TYPE) {
    throw new BuildError('invalid-argument', `Cannot import cache ${ref}: it is BuildKit's cache (${configType}), whose keys never match buildd's; export it again with buildd`);
  }
  const inline = configType === MediaTypes.ociConfig || configType === MediaTypes.dockerConfig;
  if (configType !== CACHE_CONFIG_MEDIA_TYPE && !inline) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: its config is ${configType}, not a buildd cache`);
  if (manifest.config.size > MAX_CACHE_CONFIG_BYTES) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: its config is ${manifest.config.size} bytes, over the ${MAX_CACHE_CONFIG_BYTES} byte limit`);
  await registry.fetchBlob(ref, manifest.config, content, signal);
  const json = await content.readJson(manifest.config.digest, MAX_CACHE_CONFIG_BYTES);
  const raw = inline ? inlineCache(json) : json;
  if (raw === undefined) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: the image has no inline cache (build it with --export-cache type=inline)`);
  const config = checkedConfig(ref, raw, manifest.layers);
  return {
    name: `${inline ? 'inline cache of' : 'registry'} ${ref}`,
    ref,
    config,
    blobs: manifest.layers,
    fetch: async (blob, fetchSignal) => {
      await registry.fetchBlob(ref, blob, content, fetchSignal);
    },
  };
}

function inlineCache(config: unknown): unknown {
  return typeof config === 'object' && config !== null && INLINE_CACHE_KEY in config ? (config as Record<string, unknown>)[INLINE_CACHE_KEY] : undefined;
}

/** The cache config, checked against the manifest it came with: each layer is the blob at its position. */
export function checkedConfig(ref: string, raw: unknown, blobs: readonly Descriptor[]): CacheConfig {
  const parsed = cacheConfigSchema.safeParse(raw);
  if (!parsed.success) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: malformed cache config: ${describeZodError(parsed.error) ?? 'invalid'}`);
  const config = parsed.data;
  if (config.layers.length !== blobs.length) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: the config names ${config.layers.length} layers, the manifest has ${blobs.length}`);
  for (const [i, layer] of config.layers.entries()) {
    if (layer.digest !== blobs[i].digest) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: layer ${i} is ${blobs[i].digest} in the manifest, ${layer.digest} in the config`);
    // the type an image export will describe the blob with: it must be a layer's, and the
    // compression a built layer says it has
    const type = compressionOfMediaType(blobs[i].mediaType);
    if (type === undefined) throw new BuildError('invalid-argument', `Cannot import cache ${ref}: layer ${i} has media type ${blobs[i].mediaType}, not a layer's`);
    if (layer.compression !== undefined && layer.compression.type !== type) {
      throw new BuildError('invalid-argument', `Cannot import cache ${ref}: layer ${i} is ${type} by its media type, ${layer.compression.type} by the config`);
    }
  }
  return config;
}
