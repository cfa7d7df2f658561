import { BuildError } from '../../solver/build-error';
import type { LayerBlobRequest } from '../../store/layer-blob';
import { parseImageRef } from '../../store/image-ref';
import { boolAttr } from '../bool-attr';
import type { CacheOptions } from '../builder';
import { exportCompression } from '../export-compression';

/** A checked --export-cache. */
export type CacheExportSpec =
  | { type: 'registry'; ref: string; mode: 'min' | 'max'; request: LayerBlobRequest; ignoreError: boolean; insecure: boolean }
  | { type: 'inline' };

/** A checked --import-cache. */
export interface CacheImportSpec {
  type: 'registry';
  ref: string;
  insecure: boolean;
}

const EXPORT_ATTRS: Record<string, readonly string[]> = {
  registry: ['ref', 'mode', 'compression', 'compression-level', 'force-compression', 'ignore-error', 'image-manifest', 'oci-mediatypes', 'registry.insecure'],
  inline: ['mode'],
};

/**
 * The --export-cache entries of a build, checked before anything runs, with BuildKit's names
 * and meanings; `warn` hears what is accepted but changes nothing here (an unknown attribute,
 * inline's mode=max). type=local and the others BuildKit has are refused, naming what is.
 */
export function cacheExportSpecs(entries: readonly CacheOptions[], warn: (message: string) => void): CacheExportSpec[] {
  return entries.map((entry) => {
    const { type, attrs } = entry;
    const known = EXPORT_ATTRS[type];
    if (known === undefined) {
      const later = type === 'local' ? " (type=local is not built yet: use type=registry, with buildd's own --registry-addr where there is no other registry)" : '';
      throw new BuildError('invalid-argument', `Cannot export cache type=${type}: buildd exports type=registry and type=inline${later}`);
    }
    for (const key of Object.keys(attrs)) {
      if (!known.includes(key)) warn(`--export-cache type=${type}: attribute ${key} is not known to buildd and is ignored`);
    }
    const mode = attrs.mode ?? 'min';
    if (mode !== 'min' && mode !== 'max') throw new BuildError('invalid-argument', `Cannot export cache type=${type}: mode=${mode} is not min or max`);
    if (type === 'inline') {
      if (mode === 'max') warn("--export-cache type=inline: mode=max is not supported by an inline cache, which holds the image's own layers; min is used");
      return { type: 'inline' };
    }
    const ref = requiredRef('export', attrs);
    if (attrs['image-manifest'] !== undefined && !boolAttr(attrs, 'image-manifest', true)) warn('--export-cache type=registry: image-manifest=false is ignored: buildd always writes the cache as an OCI image manifest');
    if (attrs['oci-mediatypes'] !== undefined && !boolAttr(attrs, 'oci-mediatypes', true)) warn('--export-cache type=registry: oci-mediatypes=false is ignored: a cache manifest is always OCI');
    let request: LayerBlobRequest;
    try {
      request = exportCompression(attrs);
    } catch (err) {
      throw new BuildError('invalid-argument', (err as Error).message.replace('--output attribute', '--export-cache attribute'));
    }
    return { type: 'registry', ref, mode, request, ignoreError: boolAttr(attrs, 'ignore-error', false), insecure: boolAttr(attrs, 'registry.insecure', false) };
  });
}

/** The --import-cache entries of a build (type=registry only: an inline cache is imported by its image's ref). */
export function cacheImportSpecs(entries: readonly CacheOptions[], warn: (message: string) => void): CacheImportSpec[] {
  return entries.map(({ type, attrs }) => {
    if (type !== 'registry') {
      const hint = type === 'inline' ? ' (an inline cache is imported with type=registry,ref=IMAGE)' : type === 'local' ? ' (type=local is not built yet)' : '';
      throw new BuildError('invalid-argument', `Cannot import cache type=${type}: buildd imports type=registry${hint}`);
    }
    for (const key of Object.keys(attrs)) {
      if (key !== 'ref' && key !== 'registry.insecure') warn(`--import-cache type=registry: attribute ${key} is not known to buildd and is ignored`);
    }
    return { type: 'registry', ref: requiredRef('import', attrs), insecure: boolAttr(attrs, 'registry.insecure', false) };
  });
}

function requiredRef(action: 'export' | 'import', attrs: Record<string, string>): string {
  const ref = attrs.ref;
  if (!ref) throw new BuildError('invalid-argument', `Cannot ${action} cache type=registry: ref=REPOSITORY[:TAG] is missing`);
  try {
    return parseImageRef(ref).toString();
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot ${action} cache type=registry: ref=${ref}: ${(err as Error).message}`);
  }
}
