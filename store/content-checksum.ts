import { createHash, Hash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { expandGlob, hasGlobMeta } from './path-glob';
import { PathPatterns } from './path-pattern';
import { cleanAbsolute, resolveInRoot } from './safe-path';

/** COPY flags that change which paths a copy selects. */
export interface ChecksumSelection {
  /** COPY --exclude: left out below each matched directory, relative to it */
  exclude?: string[];
  /** COPY --parents: each pattern is a pivot directory and an include pattern below it */
  parents?: boolean;
}

interface Filter {
  include?: PathPatterns;
  exclude?: PathPatterns;
}

/**
 * The checksum of just the paths a COPY selects from a directory (BuildKit's content-based
 * cache key for file ops): for every match of every pattern, each entry below it with its
 * relative path, type, permission bits, link target and content digest. Ownership and times
 * are left out, as COPY resets ownership and BuildKit ignores times. Streams file contents.
 * A plain path that is missing is not-found, the error COPY itself would give.
 */
export async function checksumPaths(root: string, patterns: string[], signal?: AbortSignal, selection: ChecksumSelection = {}): Promise<string> {
  const hash = createHash('sha256');
  const exclude = selection.exclude && selection.exclude.length > 0 ? new PathPatterns(selection.exclude) : undefined;
  for (const written of patterns) {
    let pattern = written;
    let include: PathPatterns | undefined;
    if (selection.parents) {
      const cut = written.indexOf('/./');
      pattern = cut >= 0 ? written.slice(0, cut) || '/' : '/';
      const inner = cleanAbsolute(cut >= 0 ? written.slice(cut + 3) : written).slice(1);
      include = new PathPatterns([inner]);
      hash.update(`parents ${inner}\0`);
      if (!hasGlobMeta(pattern) && !hasGlobMeta(inner)) {
        await fsp.stat(await resolveInRoot(root, `${pattern}/${inner}`)).catch(() => {
          throw new BuildError('not-found', `Cannot compute checksum of ${written}: not found in the build context`);
        });
      }
    }
    const matches = await expandGlob(root, pattern);
    // A wildcard that matches nothing copies nothing (BuildKit's AllowEmptyWildcard); a plain path must exist.
    if (matches.length === 0 && !hasGlobMeta(pattern)) {
      throw new BuildError('not-found', `Cannot compute checksum of ${pattern}: not found in the build context`);
    }
    for (const rel of matches) {
      hash.update(`match ${pattern} ${rel}\0`);
      // The selected path itself is followed, as COPY follows it; entries below it are not.
      await hashTree(await resolveInRoot(root, rel), rel, '', hash, { include, exclude }, signal);
    }
  }
  return 'sha256:' + hash.digest('hex');
}

/** `inner` is the path below the matched source, which the filters apply to ('' for the match itself). */
async function hashTree(abs: string, rel: string, inner: string, hash: Hash, filter: Filter, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const excluded = inner !== '' && filter.exclude?.matches(inner) === true;
  const included = inner === '' || (!excluded && (filter.include === undefined || filter.include.matches(inner)));
  if (excluded && filter.include === undefined && !filter.exclude?.hasExclusions) return;
  const st = await fsp.lstat(abs);
  if (!included && !st.isDirectory()) return;
  const perm = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) {
    hash.update(`link ${rel} ${perm} ${await fsp.readlink(abs)}\0`);
  } else if (st.isDirectory()) {
    if (included) hash.update(`dir ${rel} ${perm}\0`);
    const sub = included ? { exclude: filter.exclude } : filter;
    for (const name of (await fsp.readdir(abs)).sort()) {
      await hashTree(path.join(abs, name), `${rel}/${name}`, inner ? `${inner}/${name}` : name, hash, sub, signal);
    }
  } else if (st.isFile()) {
    const content = createHash('sha256');
    for await (const chunk of createReadStream(abs, { signal })) content.update(chunk as Buffer);
    hash.update(`file ${rel} ${perm} ${st.size} ${content.digest('hex')}\0`);
  } else {
    hash.update(`other ${rel} ${perm} ${st.mode >>> 12}\0`);
  }
}
