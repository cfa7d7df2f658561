import { imageIndexSchema, imageManifestSchema } from '../../store/manifest';
import { IMAGE_MANIFEST_TYPES, INDEX_TYPES } from '../../store/oci-media-types';
import { DistributionError } from './distribution-error';

/** Largest manifest accepted (distribution's default limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** What a pushed manifest refers to, once it is known to be what it says. */
export interface CheckedManifest {
  mediaType: string;
  /** blobs an image manifest needs in the repository (config and layers, without foreign ones) */
  blobs: string[];
  /** manifests an index needs in the repository */
  manifests: string[];
  subject?: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/**
 * Checks a manifest body against the media type it is pushed as (the Content-Type, or the
 * body's own mediaType when the header is absent): JSON, of that kind (an index posing as an
 * image manifest and the reverse are refused), with a mediaType member that agrees when it
 * has one. The caller checks that what it refers to is in the repository.
 */
export function checkManifest(body: Buffer, contentType: string | undefined): CheckedManifest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalid('the body is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid('the body is not a JSON object');
  const own = (json as { mediaType?: unknown }).mediaType;
  const header = contentType?.split(';')[0]?.trim();
  const mediaType = header !== undefined && header !== '' ? header : typeof own === 'string' ? own : undefined;
  if (mediaType === undefined) throw invalid('neither a Content-Type nor a mediaType says what it is');
  if (own !== undefined && own !== mediaType) throw invalid(`it is pushed as ${mediaType} but says it is ${String(own)}`);
  const keys = json as Record<string, unknown>;
  if (IMAGE_MANIFEST_TYPES.includes(mediaType)) {
    if ('manifests' in keys) throw invalid(`it is pushed as ${mediaType} but holds manifests, as an index does`);
    const parsed = imageManifestSchema.safeParse(json);
    if (!parsed.success) throw invalid(`not a valid ${mediaType}`);
    const m = parsed.data;
    return {
      mediaType,
      blobs: [m.config, ...m.layers].filter((d) => d.urls === undefined || d.urls.length === 0).map((d) => d.digest),
      manifests: [],
      subject: m.subject?.digest,
      artifactType: m.artifactType ?? (m.subject ? m.config.mediaType : undefined),
      annotations: m.annotations,
    };
  }
  if (INDEX_TYPES.includes(mediaType)) {
    if ('config' in keys || 'layers' in keys) throw invalid(`it is pushed as ${mediaType} but has a config or layers, as an image manifest does`);
    const parsed = imageIndexSchema.safeParse(json);
    if (!parsed.success) throw invalid(`not a valid ${mediaType}`);
    const ix = parsed.data;
    const artifactType = (json as { artifactType?: unknown }).artifactType;
    return {
      mediaType,
      blobs: [],
      manifests: ix.manifests.map((d) => d.digest),
      subject: ix.subject?.digest,
      artifactType: typeof artifactType === 'string' ? artifactType : undefined,
      annotations: ix.annotations,
    };
  }
  throw invalid(`unsupported manifest media type ${mediaType}`);
}

function invalid(why: string): DistributionError {
  return new DistributionError(400, 'MANIFEST_INVALID', `invalid manifest: ${why}`);
}
