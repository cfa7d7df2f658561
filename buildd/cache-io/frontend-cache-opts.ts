import { z } from 'zod';
import { BuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { boolAttr } from '../bool-attr';
import type { CacheOptions } from '../builder';

const cacheImportsSchema = z.array(z.object({ Type: z.string().min(1).max(64), Attrs: z.record(z.string().max(4096)).optional() })).max(16);

/**
 * The cache imports the Dockerfile frontend's options ask for, as BuildKit's dockerui reads
 * them: `--opt cache-imports=JSON` (`[{"Type":"registry","Attrs":{"ref":"R"}}]`), else `--opt
 * cache-from=R1,R2` (registry refs, an inline cache's image among them). Docker's
 * `--cache-from` arrives this way.
 */
export function frontendCacheImports(attrs: Record<string, string>): CacheOptions[] {
  const json = attrs['cache-imports'];
  if (json !== undefined && json !== '') {
    let raw: unknown;
    try {
      raw = JSON.parse(json);
    } catch {
      throw new BuildError('invalid-argument', 'Cannot read --opt cache-imports: not JSON (expected [{"Type":"registry","Attrs":{"ref":"REF"}}])');
    }
    const parsed = cacheImportsSchema.safeParse(raw);
    if (!parsed.success) throw new BuildError('invalid-argument', `Cannot read --opt cache-imports: ${describeZodError(parsed.error) ?? 'invalid'}`);
    return parsed.data.map((e) => ({ type: e.Type, attrs: e.Attrs ?? {} }));
  }
  return (attrs['cache-from'] ?? '').split(',').map((r) => r.trim()).filter((r) => r !== '').map((ref) => ({ type: 'registry', attrs: { ref } }));
}

/** `--opt build-arg:BUILDKIT_INLINE_CACHE=1`: the images carry an inline cache, as --export-cache type=inline (docker buildx's --cache-to type=inline). */
export function frontendInlineCache(attrs: Record<string, string>): boolean {
  return boolAttr(attrs, 'build-arg:BUILDKIT_INLINE_CACHE', false);
}
