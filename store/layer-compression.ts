import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { createAdaptiveGzip } from './adaptive-gzip';
import { childFilter } from './child-filter';
import { MediaTypes } from './oci-media-types';

/** How a layer blob is compressed. */
export type CompressionType = 'gzip' | 'zstd' | 'uncompressed';

/**
 * The compression asked for a layer: a type and, for gzip and zstd, a level (always set:
 * the default is spelt out, so that "default" and "6" name the same blob in the layer index).
 * A plain value.
 */
export interface LayerCompression {
  type: CompressionType;
  level?: number;
}

/** Levels as BuildKit accepts them in compression-level. */
export const LEVEL_RANGE: Record<Exclude<CompressionType, 'uncompressed'>, { min: number; max: number; fallback: number }> = {
  // zlib's Z_DEFAULT_COMPRESSION is level 6: an explicit 6 gives the same bytes as the default.
  gzip: { min: 0, max: 9, fallback: 6 },
  // zstd's own default level.
  zstd: { min: 0, max: 22, fallback: 3 },
};

/** The compression every export used before it was a choice: gzip at zlib's default level. */
export const DEFAULT_COMPRESSION: LayerCompression = { type: 'gzip', level: LEVEL_RANGE.gzip.fallback };

/** `type` at `level`, or at its default level; uncompressed has no level. */
export function layerCompression(type: CompressionType, level?: number): LayerCompression {
  if (type === 'uncompressed') return { type };
  return { type, level: level ?? LEVEL_RANGE[type].fallback };
}

/** The OCI media type of a layer blob so compressed. */
export function layerMediaType(c: LayerCompression): string {
  if (c.type === 'gzip') return MediaTypes.ociLayerGzip;
  if (c.type === 'zstd') return MediaTypes.ociLayerZstd;
  return MediaTypes.ociLayer;
}

/** The compression a layer media type (OCI or Docker) says its blob has; undefined for others (foreign layers, unknown types). */
export function compressionOfMediaType(mediaType: string): CompressionType | undefined {
  switch (mediaType) {
    case MediaTypes.ociLayerGzip:
    case MediaTypes.dockerLayerGzip:
      return 'gzip';
    case MediaTypes.ociLayerZstd:
      return 'zstd';
    case MediaTypes.ociLayer:
    case MediaTypes.dockerLayer:
      return 'uncompressed';
    default:
      return undefined;
  }
}

/**
 * zlib's output pieces: its default (16 KiB) made each piece a file write and a few callbacks
 * on the main thread, about a second of a 150 MB push's main thread (see the commit). The
 * bytes do not depend on it.
 */
const ZLIB_CHUNK = 256 * 1024;

/** `gzip-6`, `zstd-3`, `uncompressed`: a name for file names and messages. */
export function compressionName(c: LayerCompression): string {
  return c.level === undefined ? c.type : `${c.type}-${c.level}`;
}

/**
 * A stream that compresses what is written to it. gzip runs in zlib (on libuv's thread pool,
 * so several layers compress on several cores), storing what cannot be compressed; zstd runs Debian's `zstd` program, whose
 * output for a given level is the same with any number of worker threads (-T0 uses them all).
 * Lifecycle: write the tar, end it, read the blob; destroy it to stop early.
 */
export function createCompressor(c: LayerCompression): Duplex {
  // incompressible stretches are stored instead of searched (see createAdaptiveGzip)
  if (c.type === 'gzip') return createAdaptiveGzip(c.level ?? LEVEL_RANGE.gzip.fallback, ZLIB_CHUNK);
  if (c.type === 'zstd') {
    const level = c.level ?? LEVEL_RANGE.zstd.fallback;
    // Level 0 is zstd's "default" in its library (as in BuildKit's); the program wants 1-22,
    // and 20 and above only with --ultra.
    const args = ['-q', '-c', '-T0', `-${level === 0 ? LEVEL_RANGE.zstd.fallback : level}`];
    if (level >= 20) args.push('--ultra');
    return childFilter('zstd', args, 'compress a layer with zstd');
  }
  return new PassThrough();
}

/** A stream that decompresses a blob of compression `type`; same lifecycle as createCompressor. */
export function createDecompressor(type: CompressionType): Duplex {
  if (type === 'gzip') return createGunzip({ chunkSize: ZLIB_CHUNK });
  if (type === 'zstd') return childFilter('zstd', ['-q', '-d', '-c'], 'decompress a zstd layer');
  return new PassThrough();
}
