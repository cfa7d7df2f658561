import { BuildError } from '../solver/build-error';
import { LEVEL_RANGE, layerCompression, type CompressionType } from '../store/layer-compression';
import type { LayerBlobRequest } from '../store/layer-blob';
import { boolAttr } from './bool-attr';

const TYPES: readonly CompressionType[] = ['gzip', 'zstd', 'uncompressed'];

/**
 * The layer compression an `--output` asks for, read as BuildKit's exporters read it
 * (util/compression): `compression=gzip|zstd|uncompressed` (estargz is BuildKit's too, not
 * built here), `compression-level=N` within the type's range (ignored for uncompressed, as
 * there), `force-compression=true` to convert base layers that came in another compression.
 * Absent, it is gzip at zlib's default level: what every export wrote before.
 */
export function exportCompression(attrs: Record<string, string>): LayerBlobRequest {
  const raw = attrs.compression ?? 'gzip';
  if (raw === 'estargz') {
    throw new BuildError('invalid-argument', 'Cannot use --output attribute compression=estargz: estargz is not supported by buildd (use gzip, zstd or uncompressed)');
  }
  if (!(TYPES as readonly string[]).includes(raw)) {
    throw new BuildError('invalid-argument', `Cannot use --output attribute compression=${JSON.stringify(raw)}: unsupported layer compression type (${TYPES.join(', ')})`);
  }
  const type = raw as CompressionType;
  const force = boolAttr(attrs, 'force-compression', false);
  const levelText = attrs['compression-level'];
  if (levelText === undefined) return { compression: layerCompression(type), force };
  const level = /^-?\d{1,9}$/.test(levelText.trim()) ? Number(levelText.trim()) : NaN;
  if (!Number.isInteger(level)) {
    throw new BuildError('invalid-argument', `Cannot use --output attribute compression-level=${JSON.stringify(levelText)}: not an integer`);
  }
  if (type === 'uncompressed') return { compression: layerCompression(type), force };
  const { min, max } = LEVEL_RANGE[type];
  if (level < min || level > max) {
    throw new BuildError('invalid-argument', `Cannot use --output attribute compression-level=${level}: ${type} levels are ${min} to ${max}`);
  }
  return { compression: layerCompression(type, level), force };
}
