import { createHash, Hash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { expandGlob, hasGlobMeta } from './path-glob';
import { resolveInRoot } from './safe-path';

/**
 * The checksum of just the paths a COPY selects from a directory (BuildKit's content-based
 * cache key for file ops): for every match of every pattern, each entry below it with its
 * relative path, type, permission bits, link target and content digest. Ownership and times
 * are left out, as COPY resets ownership and BuildKit ignores times. Streams file contents.
 * A plain path that is missing is not-found, the error COPY itself would give.
 */
export async function checksumPaths(root: string, patterns: string[], signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for (const pattern of patterns) {
    const matches = await expandGlob(root, pattern);
    // A wildcard that matches nothing copies nothing (BuildKit's AllowEmptyWildcard); a plain path must exist.
    if (matches.length === 0 && !hasGlobMeta(pattern)) {
      throw new BuildError('not-found', `Cannot compute checksum of ${pattern}: not found in the build context`);
    }
    for (const rel of matches) {
      hash.update(`match ${pattern} ${rel}\0`);
      // The selected path itself is followed, as COPY follows it; entries below it are not.
      await hashTree(await resolveInRoot(root, rel), rel, hash, signal);
    }
  }
  return 'sha256:' + hash.digest('hex');
}

async function hashTree(abs: string, rel: string, hash: Hash, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const st = await fsp.lstat(abs);
  const perm = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) {
    hash.update(`link ${rel} ${perm} ${await fsp.readlink(abs)}\0`);
  } else if (st.isDirectory()) {
    hash.update(`dir ${rel} ${perm}\0`);
    for (const name of (await fsp.readdir(abs)).sort()) {
      await hashTree(path.join(abs, name), `${rel}/${name}`, hash, signal);
    }
  } else if (st.isFile()) {
    const content = createHash('sha256');
    for await (const chunk of createReadStream(abs, { signal })) content.update(chunk as Buffer);
    hash.update(`file ${rel} ${perm} ${st.size} ${content.digest('hex')}\0`);
  } else {
    hash.update(`other ${rel} ${perm} ${st.mode >>> 12}\0`);
  }
}
