import { BuildError } from '../solver/build-error';

/**
 * The annotations an output puts on the image manifest, as BuildKit's exporters read them:
 * `annotation.KEY=V` (no type means the manifest) and `annotation-manifest.KEY=V`, each also
 * as `…[PLATFORM].KEY` for the manifest of that platform only (`platform` is the image's, such
 * as linux/amd64). Undefined when there are none. The index and descriptor kinds are left to
 * output-attr-warnings.ts, which says they are not supported yet.
 */
export function manifestAnnotations(attrs: Readonly<Record<string, string>>, platform: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(attrs)) {
    const m = /^annotation(?:-manifest)?(?:\[([^\]]*)\])?\.(.+)$/.exec(key);
    if (!m) continue;
    const [, only, name] = m as unknown as [string, string | undefined, string];
    if (only !== undefined && normalize(only) !== normalize(platform)) continue;
    if (name.length > 1024 || value.length > 64 * 1024) throw new BuildError('invalid-argument', `Cannot use --output attribute ${key.slice(0, 100)}: an annotation is at most a 1 KiB key and a 64 KiB value`);
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** `linux/amd64` and `linux/amd64/` alike; a platform without an OS is not one. */
function normalize(platform: string): string {
  return platform.trim().toLowerCase().replace(/\/+$/, '');
}
