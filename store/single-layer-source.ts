import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { lstatOrUndefined } from './path-exists';
import { hasGlobMeta } from './path-glob';

/**
 * The upper dir, among `uppers` (one per layer of a committed snapshot chain), that alone holds
 * every path of `paths` (a COPY's sources, image paths), when the merged `view` of the chain
 * shows each as a real file or directory reached through real directories (no symlink to
 * follow). What the view shows below such a path is then exactly what that upper dir holds,
 * whiteouts aside (they hide nothing, as no other layer has the path): a copy may read the upper
 * dir instead of the mount, and link its files. Undefined when that does not hold (a glob, the
 * root, a path two layers share), and the copy reads the view. Sound only where
 * overlayKeepsPathsInPlace holds.
 */
export async function singleLayerSource(view: string, uppers: readonly string[], paths: readonly string[]): Promise<string | undefined> {
  let holder: string | undefined;
  for (const p of paths) {
    const parts = p.split('/').filter((s) => s !== '' && s !== '.');
    if (parts.length === 0 || hasGlobMeta(p) || parts.includes('..')) return undefined;
    if ((await realEntry(view, parts)) === undefined) return undefined;
    const holders: string[] = [];
    for (const upper of uppers) if ((await lstatThroughDirs(upper, parts)) !== undefined) holders.push(upper);
    const [only] = holders;
    if (holders.length !== 1 || only === undefined || (holder !== undefined && holder !== only)) return undefined;
    if ((await realEntry(only, parts)) === undefined) return undefined;
    holder = only;
  }
  return holder;
}

/** The lstat of `root/parts` when each component before the last is a real directory; else undefined. */
async function lstatThroughDirs(root: string, parts: readonly string[]): Promise<Stats | undefined> {
  let at = root;
  for (let i = 0; i < parts.length; i++) {
    at = path.join(at, parts[i] as string);
    const st = await lstatOrUndefined(at);
    if (st === undefined) return undefined;
    if (i === parts.length - 1) return st;
    if (!st.isDirectory()) return undefined;
  }
  return undefined;
}

/** The entry at `root/parts` when it is a regular file or a directory reached through real directories. */
async function realEntry(root: string, parts: readonly string[]): Promise<Stats | undefined> {
  const st = await lstatThroughDirs(root, parts);
  return st !== undefined && (st.isDirectory() || st.isFile()) ? st : undefined;
}

let inPlace: Promise<boolean> | undefined;

/**
 * Whether this kernel's overlayfs keeps every upper entry's content at its own path: neither
 * redirect_dir (a directory renamed in a RUN points at its lower path by an xattr, and shows
 * that lower content under its new name) nor metacopy (a file whose data stays in the lower
 * layer) is on by default. buildd never turns them on in its mount options, so with both off no
 * snapshot holds such an entry. Read once; unknown counts as on.
 */
export function overlayKeepsPathsInPlace(): Promise<boolean> {
  inPlace ??= Promise.all(['redirect_dir', 'metacopy'].map((p) => fsp.readFile(`/sys/module/overlay/parameters/${p}`, 'utf8').then((v) => /^(n|off)$/i.test(v.trim()), () => false))).then((offs) => offs.every(Boolean));
  return inPlace;
}
