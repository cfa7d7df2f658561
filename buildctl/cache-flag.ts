import { BuildError } from '../solver/build-error';
import { splitCsv } from './build-flags';

/** One --export-cache or --import-cache as the daemon receives it (BuildStart's CacheOptionsEntry). */
export interface CacheFlag {
  type: string;
  attrs: Record<string, string>;
}

/**
 * `type=registry,ref=R,mode=max` as BuildKit's buildctl reads it: one CSV record of key=value
 * fields (a field may be double-quoted: `"dest=a,b"`), one of them the type; a value without `type=` is the legacy form of a registry ref
 * (`--import-cache localhost:5000/app:cache`). The daemon checks types and attributes.
 */
export function parseCacheFlag(flag: '--export-cache' | '--import-cache', text: string): CacheFlag {
  if (!/(^|,)\s*type=/i.test(text)) return { type: 'registry', attrs: { ref: text } };
  const attrs: Record<string, string> = {};
  let type: string | undefined;
  for (const field of splitCsv(text)) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw new BuildError('invalid-argument', `Cannot parse ${flag} ${text}: "${field}" is not key=value`);
    const key = field.slice(0, eq).trim().toLowerCase();
    const value = field.slice(eq + 1);
    if (key === 'type') type = value;
    else attrs[key] = value;
  }
  if (type === undefined || type === '') throw new BuildError('invalid-argument', `Cannot parse ${flag} ${text}: type is missing (type=registry,ref=REF)`);
  return { type, attrs };
}
