import { z } from 'zod';

/**
 * buildd's cache manifest (docs/cache-manifest.md): an OCI image manifest whose config is a
 * CacheConfig of this media type and whose layers are the blobs the records' chains name.
 * BuildKit's own (application/vnd.buildkit.cacheconfig.v0) is recognised only to be refused
 * by name: its keys come from BuildKit's op digests and can never match buildd's.
 */
export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildd.cache.config.v1+json';
export const BUILDKIT_CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';
/** the image config key an inline cache travels under (BuildKit's is moby.buildkit.cache.v0) */
export const INLINE_CACHE_KEY = 'io.buildd.cache.v1';

/** Most records and layers one cache may hold: a bound on what an import parses and keeps. */
export const MAX_CACHE_RECORDS = 50_000;
/** A cache config is read whole: bounded before it is parsed, and when it is written. */
export const MAX_CACHE_CONFIG_BYTES = 32 * 1024 * 1024;
/** as many as an image manifest may list (store/manifest.ts): the cache travels as one */
export const MAX_CACHE_LAYERS = 1_000;
/** a chain deeper than overlayfs mounts (128 lower layers, ours stack more as snapshots) is no build's */
const MAX_CHAIN = 500;

const digest = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'a digest must be sha256:<64 lowercase hex digits>');

const compressionSchema = z.object({
  type: z.enum(['gzip', 'zstd', 'uncompressed']),
  level: z.number().int().optional(),
}).strict();

/** One blob of the cache, at the same position as in the manifest's layers. */
export const cacheLayerSchema = z.object({
  digest,
  /** sha256 of the uncompressed tar: checked when the layer is applied */
  diffId: digest,
  /** `build`: a step made it (its compression is `compression`); `pull`: a base image layer as pulled */
  origin: z.enum(['build', 'pull']),
  compression: compressionSchema.optional(),
}).strict();

/** One step's result: its cache key and the layers that make its filesystem, base first. */
export const cacheRecordSchema = z.object({
  key: digest,
  chain: z.array(z.object({
    /** index into `layers` */
    layer: z.number().int().nonnegative(),
    /** when the first build made this snapshot: images date their history from it */
    createdAt: z.string().max(64).regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/, 'an RFC 3339 time'),
  }).strict()).max(MAX_CHAIN),
  /** the step that made it, for du */
  description: z.string().max(1024).optional(),
}).strict();

export const cacheConfigSchema = z.object({
  schemaVersion: z.literal(1),
  layers: z.array(cacheLayerSchema).max(MAX_CACHE_LAYERS),
  records: z.array(cacheRecordSchema).max(MAX_CACHE_RECORDS),
}).strict().superRefine((c, ctx) => {
  for (const [i, r] of c.records.entries()) {
    for (const e of r.chain) {
      if (e.layer >= c.layers.length) ctx.addIssue({ code: 'custom', path: ['records', i, 'chain'], message: `layer ${e.layer} of record ${r.key} is not among the ${c.layers.length} layers` });
    }
  }
});

export type CacheConfig = z.infer<typeof cacheConfigSchema>;
export type CacheLayer = z.infer<typeof cacheLayerSchema>;
export type CacheRecordEntry = z.infer<typeof cacheRecordSchema>;
