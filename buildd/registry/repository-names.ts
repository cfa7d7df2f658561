import { DistributionError } from './distribution-error';

/**
 * The grammar of the OCI Distribution spec: a repository name is path components of lowercase
 * letters and digits joined by separators, a tag at most 128 characters, a digest
 * `algorithm:hex` (only sha256 is stored here).
 */
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
/** distribution's limit on a whole name */
export const MAX_NAME_CHARS = 255;

/** `name` when it is a valid repository name, else NAME_INVALID (400). */
export function repositoryName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME_CHARS || !NAME_RE.test(name)) {
    throw new DistributionError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 300))}`);
  }
  return name;
}

export function isDigest(reference: string): boolean {
  return DIGEST_RE.test(reference);
}

export function isTag(reference: string): boolean {
  return TAG_RE.test(reference);
}

/** A blob digest from a URL or a query; only sha256 is accepted (DIGEST_INVALID otherwise). */
export function blobDigest(text: string | null): string {
  if (text === null || !DIGEST_RE.test(text)) throw new DistributionError(400, 'DIGEST_INVALID', `invalid digest ${JSON.stringify((text ?? '').slice(0, 200))}: only sha256:<64 hex> is supported`);
  return text;
}

/** What a /v2/ URL path asks for. */
export type RegistryRoute =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; id: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

/**
 * Routes a request path. The repository name is everything before the last `/manifests/`,
 * `/blobs/` or `/tags/list` (names hold slashes); it is validated here, so a handler never
 * sees a name with `..` or a character outside the grammar. Undefined for paths outside the API.
 */
export function routeOf(pathname: string): RegistryRoute | undefined {
  if (pathname === '/v2/' || pathname === '/v2') return { kind: 'base' };
  if (pathname === '/v2/_catalog') return { kind: 'catalog' };
  if (!pathname.startsWith('/v2/')) return undefined;
  const rest = pathname.slice(4);
  let m: RegExpExecArray | null;
  if ((m = /^(.+)\/tags\/list$/.exec(rest))) return { kind: 'tags', name: repositoryName(m[1] as string) };
  if ((m = /^(.+)\/manifests\/([^/]+)$/.exec(rest))) {
    const reference = m[2] as string;
    if (!isTag(reference) && !isDigest(reference)) throw new DistributionError(400, 'MANIFEST_INVALID', `invalid reference ${JSON.stringify(reference.slice(0, 200))}: neither a tag nor a sha256 digest`);
    return { kind: 'manifest', name: repositoryName(m[1] as string), reference };
  }
  if ((m = /^(.+)\/blobs\/uploads\/?$/.exec(rest))) return { kind: 'uploads', name: repositoryName(m[1] as string) };
  if ((m = /^(.+)\/blobs\/uploads\/([A-Za-z0-9-]+)$/.exec(rest))) return { kind: 'upload', name: repositoryName(m[1] as string), id: m[2] as string };
  if ((m = /^(.+)\/blobs\/([^/]+)$/.exec(rest))) return { kind: 'blob', name: repositoryName(m[1] as string), digest: blobDigest(m[2] as string) };
  if ((m = /^(.+)\/referrers\/([^/]+)$/.exec(rest))) return { kind: 'referrers', name: repositoryName(m[1] as string), digest: blobDigest(m[2] as string) };
  return undefined;
}
