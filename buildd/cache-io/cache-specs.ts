import { BuildError } from '../../solver/build-error';
import type { LayerBlobRequest } from '../../store/layer-blob';
import { parseImageRef } from '../../store/image-ref';
import { boolAttr } from '../bool-attr';
import type { CacheOptions } from '../builder';
import { exportCompression } from '../export-compression';

/** What a registry or local cache export writes: BuildKit's mode and compression attributes. */
interface WrittenCache {
  mode: 'min' | 'max';
  request: LayerBlobRequest;
  ignoreError: boolean;
}

/** A checked --export-cache; `entry` is its position in the client's list (a local one's dest is the client's). */
export type CacheExportSpec =
  | ({ type: 'registry'; ref: string; insecure: boolean } & WrittenCache)
  | ({ type: 'local'; entry: number; tag: string; present: ReadonlySet<string> } & WrittenCache)
  | { type: 'inline' };

/** A checked --import-cache; `entry` is its position in the client's list (a local one's src is the client's). */
export type CacheImportSpec =
  | { type: 'registry'; ref: string; insecure: boolean }
  | { type: 'local'; entry: number; tag: string; digest?: string };

const WRITE_ATTRS = ['mode', 'compression', 'compression-level', 'force-compression', 'ignore-error', 'image-manifest', 'oci-mediatypes'];
const EXPORT_ATTRS: Record<string, readonly string[]> = {
  registry: ['ref', 'registry.insecure', ...WRITE_ATTRS],
  // dest stays on the client; an older client may still send it
  local: ['dest', 'tag', ...WRITE_ATTRS],
  inline: ['mode'],
};
const IMPORT_ATTRS: Record<string, readonly string[]> = {
  registry: ['ref', 'registry.insecure'],
  local: ['src', 'tag', 'digest'],
};
/** An OCI layout tag, as the ref.name annotation holds it (distribution's tag grammar). */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * The --export-cache entries of a build, checked before anything runs, with BuildKit's names
 * and meanings; `warn` hears what is accepted but changes nothing here (an unknown attribute,
 * inline's mode=max). Other types BuildKit has are refused, naming what is.
 */
export function cacheExportSpecs(entries: readonly CacheOptions[], warn: (message: string) => void): CacheExportSpec[] {
  return entries.map(({ type, attrs, present }, entry) => {
    const known = EXPORT_ATTRS[type];
    if (known === undefined) throw new BuildError('invalid-argument', `Cannot export cache type=${type}: buildd exports type=registry, type=local and type=inline`);
    for (const key of Object.keys(attrs)) {
      if (!known.includes(key)) warn(`--export-cache type=${type}: attribute ${key} is not known to buildd and is ignored`);
    }
    const mode = attrs.mode ?? 'min';
    if (mode !== 'min' && mode !== 'max') throw new BuildError('invalid-argument', `Cannot export cache type=${type}: mode=${mode} is not min or max`);
    if (type === 'inline') {
      if (mode === 'max') warn("--export-cache type=inline: mode=max is not supported by an inline cache, which holds the image's own layers; min is used");
      return { type: 'inline' };
    }
    if (attrs['image-manifest'] !== undefined && !boolAttr(attrs, 'image-manifest', true)) warn(`--export-cache type=${type}: image-manifest=false is ignored: buildd always writes the cache as an OCI image manifest`);
    if (attrs['oci-mediatypes'] !== undefined && !boolAttr(attrs, 'oci-mediatypes', true)) warn(`--export-cache type=${type}: oci-mediatypes=false is ignored: a cache manifest is always OCI`);
    let request: LayerBlobRequest;
    try {
      request = exportCompression(attrs);
    } catch (err) {
      throw new BuildError('invalid-argument', (err as Error).message.replace('--output attribute', '--export-cache attribute'));
    }
    const written: WrittenCache = { mode, request, ignoreError: boolAttr(attrs, 'ignore-error', false) };
    if (type === 'local') return { type: 'local', entry, tag: layoutTag('export', attrs), present: new Set(present), ...written };
    return { type: 'registry', ref: requiredRef('export', attrs), insecure: boolAttr(attrs, 'registry.insecure', false), ...written };
  });
}

/** The --import-cache entries of a build (an inline cache is imported by its image's ref, type=registry). */
export function cacheImportSpecs(entries: readonly CacheOptions[], warn: (message: string) => void): CacheImportSpec[] {
  return entries.map(({ type, attrs }, entry) => {
    const known = IMPORT_ATTRS[type];
    if (known === undefined) {
      const hint = type === 'inline' ? ' (an inline cache is imported with type=registry,ref=IMAGE)' : '';
      throw new BuildError('invalid-argument', `Cannot import cache type=${type}: buildd imports type=registry and type=local${hint}`);
    }
    for (const key of Object.keys(attrs)) {
      if (!known.includes(key)) warn(`--import-cache type=${type}: attribute ${key} is not known to buildd and is ignored`);
    }
    if (type === 'local') {
      const digest = attrs.digest;
      if (digest !== undefined && !/^sha256:[a-f0-9]{64}$/.test(digest)) throw new BuildError('invalid-argument', `Cannot import cache type=local: digest=${digest} is not sha256:<64 hex digits>`);
      return { type: 'local', entry, tag: layoutTag('import', attrs), ...(digest !== undefined ? { digest } : {}) };
    }
    return { type: 'registry', ref: requiredRef('import', attrs), insecure: boolAttr(attrs, 'registry.insecure', false) };
  });
}

/** The tag of a local cache in its directory's index.json (BuildKit's default: latest). */
function layoutTag(action: 'export' | 'import', attrs: Record<string, string>): string {
  const tag = attrs.tag ?? 'latest';
  if (!TAG.test(tag)) throw new BuildError('invalid-argument', `Cannot ${action} cache type=local: tag=${tag} is not a tag`);
  return tag;
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
