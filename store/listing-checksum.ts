import { createHash } from 'node:crypto';
import { cleanAbsolute } from './safe-path';
import { hasGlobMeta } from './path-glob';

/** One entry of a tree as its listing gives it (a kept local's index entry). */
export interface ListedEntry {
  /** relative, `/`-separated, parents before children */
  path: string;
  type: 'FILE' | 'DIR' | 'SYMLINK';
  mode: number;
  size: number;
  link_target: string;
  xattrs: Record<string, Buffer>;
}

/**
 * What checksumPaths (content-checksum.ts) gives for `patterns` over a tree made exactly from
 * `entries` (a kept local's generation, whose files have their listed modes and sizes), with
 * `digests` (path → hex sha256) of every regular file, computed from the listing alone: no
 * lstat, no xattr list, no read. The same text in the same order: the match and the root,
 * then every entry in pre-order with names sorted as the walk sorts them. Undefined where the
 * listing cannot stand in for the walk, and the caller walks: a pattern other than the whole
 * tree (`.`, `/`), a file whose digest is unknown, or any extended attribute (the daemon may
 * have left one out on a file system that refused it).
 */
export function checksumOfListing(entries: readonly ListedEntry[], digests: ReadonlyMap<string, string>, patterns: readonly string[]): string | undefined {
  if (patterns.length !== 1) return undefined;
  const pattern = patterns[0] as string;
  if (hasGlobMeta(pattern) || cleanAbsolute(pattern) !== '/') return undefined;
  const children = new Map<string, ListedEntry[]>();
  for (const e of entries) {
    if (Object.keys(e.xattrs).length > 0) return undefined;
    const cut = e.path.lastIndexOf('/');
    const parent = cut < 0 ? '' : e.path.slice(0, cut);
    let list = children.get(parent);
    if (!list) children.set(parent, (list = []));
    list.push(e);
  }
  const hash = createHash('sha256');
  hash.update('match ' + pattern + ' /\0');
  hash.update('dir /\0');
  const name = (e: ListedEntry): string => e.path.slice(e.path.lastIndexOf('/') + 1);
  // the walk's order: pre-order, each directory's names in the default sort (UTF-16 code units)
  const stack: ListedEntry[] = [...(children.get('') ?? [])].sort(byName(name)).reverse();
  let text: string[] = [];
  while (stack.length > 0) {
    const e = stack.pop() as ListedEntry;
    const rel = '//' + e.path;
    const perm = (e.mode & 0o7777).toString(8);
    if (e.type === 'SYMLINK') {
      // lstat gives a symlink 0777 whatever was listed
      text.push(`link ${rel} 777 ${e.link_target}\0`);
    } else if (e.type === 'DIR') {
      text.push(`dir ${rel} ${perm}\0`);
      const below = children.get(e.path);
      if (below) stack.push(...[...below].sort(byName(name)).reverse());
    } else {
      const digest = digests.get(e.path);
      if (digest === undefined) return undefined;
      text.push(`file ${rel} ${perm} ${e.size} ${digest}\0`);
    }
    if (text.length >= 1024) {
      hash.update(text.join(''));
      text = [];
    }
  }
  hash.update(text.join(''));
  return 'sha256:' + hash.digest('hex');
}

function byName(name: (e: ListedEntry) => string): (a: ListedEntry, b: ListedEntry) => number {
  return (a, b) => {
    const x = name(a);
    const y = name(b);
    return x < y ? -1 : x > y ? 1 : 0;
  };
}
