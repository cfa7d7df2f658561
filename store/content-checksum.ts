import { createHash, Hash } from 'node:crypto';
import { createReadStream, promises as fsp, type Stats } from 'node:fs';
import { BuildError } from '../solver/build-error';
import { selectSources, walkSelected } from './copy-selection';
import { CAPABILITY_XATTR, OVERLAY_XATTR_PREFIX, readXattrs } from './xattrs';

/** COPY flags that change which paths a copy selects. */
export interface ChecksumSelection {
  /** COPY --exclude: left out below each matched directory, relative to it */
  exclude?: string[];
  /** COPY --parents: each pattern is a pivot directory and an include pattern below it */
  parents?: boolean;
}

/**
 * The checksum of just what a COPY takes from a directory (BuildKit's content-based cache
 * key for file ops). The sources are chosen by selectSources and walkSelected, the very
 * functions copyAction copies through, so a change to anything copied changes the key and a
 * change to anything left out (an --exclude'd file, a path outside a --parents pattern)
 * does not. Covered: each match with its type, a matched file's permission bits and content
 * digest, and every entry copied below a matched directory with its relative path, type,
 * permission bits, link target and content digest; and, for each of these, its extended
 * attributes that BuildKit's checksum keys (isKeyedXattr), so a file whose capability alone
 * changed is copied again. Ownership and times are left out, as
 * COPY resets ownership and BuildKit ignores times; a matched directory's own mode is left
 * out, as COPY creates its destination 0755. Streams file contents. A plain path that is
 * missing is not-found, the error COPY itself would give.
 */
export async function checksumPaths(root: string, patterns: string[], signal?: AbortSignal, selection: ChecksumSelection = {}): Promise<string> {
  const hash = createHash('sha256');
  const notFound = (pattern: string): BuildError => new BuildError('not-found', `Cannot compute checksum of ${pattern}: not found in the build context`);
  const sources = await selectSources(root, { srcPaths: patterns, ...selection }, notFound);
  for (const source of sources) {
    signal?.throwIfAborted();
    const parents = source.parentsInclude === undefined ? '' : ` parents ${source.parentsInclude}`;
    hash.update(`match ${source.pattern}${parents} ${source.path}\0`);
    if (!source.stat.isDirectory()) {
      await hashEntry(source.hostPath, source.path, source.stat, hash, signal);
      continue;
    }
    hash.update(`dir ${source.path}\0`);
    for await (const entry of walkSelected(source.hostPath, source.filter, signal)) {
      await hashEntry(entry.hostPath, `${source.path}/${entry.rel}`, entry.stat, hash, signal);
    }
  }
  return 'sha256:' + hash.digest('hex');
}

/** One entry as the copy writes it; `st` is the stat the copy uses (followed only for a match). */
async function hashEntry(abs: string, rel: string, st: Stats, hash: Hash, signal?: AbortSignal): Promise<void> {
  const perm = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) {
    hash.update(`link ${rel} ${perm} ${await fsp.readlink(abs)}\0`);
  } else if (st.isDirectory()) {
    hash.update(`dir ${rel} ${perm}\0`);
  } else if (st.isFile()) {
    const content = createHash('sha256');
    for await (const chunk of createReadStream(abs, { signal })) content.update(chunk as Buffer);
    hash.update(`file ${rel} ${perm} ${st.size} ${content.digest('hex')}\0`);
  } else {
    hash.update(`other ${rel} ${perm} ${st.mode >>> 12} ${st.rdev}\0`);
  }
  // entries without attributes hash as before, so their keys do not change
  for (const [name, value] of await readXattrs(abs, isKeyedXattr)) hash.update(`xattr ${rel} ${name} ${value.toString('hex')}\0`);
}

/**
 * The attributes a COPY's key covers, as BuildKit's content checksum (the tarsum header of
 * cache/contenthash): security.capability and every name outside security.*, system.* and
 * com.apple.* (labels, ACLs and Finder data are not content). overlayfs' own trusted.overlay.*
 * are left out too, as the copy never writes them.
 */
function isKeyedXattr(name: string): boolean {
  if (name === CAPABILITY_XATTR) return true;
  return !['security.', 'system.', 'com.apple.', OVERLAY_XATTR_PREFIX].some((p) => name.startsWith(p));
}
