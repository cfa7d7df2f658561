import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** Most checksums remembered: one per (kept copy, COPY source selection); each a short string. */
const DEFAULT_MAX_ENTRIES = 4096;

/**
 * Remembers the checksums of trees that never change once made: the kept copies of keyed
 * locals (`<root>/locals/<key>/gen-<n>/tree`, see buildd/locals/locals-store.ts), which are
 * published whole by one rename and then only read until removed. A rebuild of an unchanged
 * context reuses the same copy, so its COPY keys are known without walking 20,000 entries again.
 *
 * A tree is identified by its path and its directory's birth time: a copy removed and a new one
 * made at the same path (a pruned key sent again) has another birth time, so it never meets
 * the old checksum. Where the file system has no birth time, nothing is remembered.
 *
 * Lifecycle: one per worker, for the daemon's life; entries leave least recently used first.
 */
export class TreeChecksumMemo {
  private readonly entries = new Map<string, string>();

  /**
   * @param immutableDir the directory under which every tree is immutable (the kept locals);
   *   a tree anywhere else is always checksummed anew
   */
  constructor(
    private readonly immutableDir: string,
    private readonly maxEntries = DEFAULT_MAX_ENTRIES,
  ) {}

  /**
   * The checksum of `selection` (patterns and flags, as JSON) in `tree`: remembered when `tree`
   * lies under the immutable dir, else `compute()`'s.
   */
  async checksum(tree: string, selection: unknown, compute: () => Promise<string>): Promise<string> {
    const id = await this.treeId(tree);
    if (id === undefined) return compute();
    const key = `${id}\0${JSON.stringify(selection)}`;
    const known = this.entries.get(key);
    if (known !== undefined) {
      // most recently used last
      this.entries.delete(key);
      this.entries.set(key, known);
      return known;
    }
    const value = await compute();
    this.entries.set(key, value);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    return value;
  }

  private async treeId(tree: string): Promise<string | undefined> {
    const rel = path.relative(this.immutableDir, path.resolve(tree));
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
    const st = await fsp.lstat(tree, { bigint: true }).catch(() => undefined);
    if (!st?.isDirectory() || st.birthtimeNs === 0n) return undefined;
    return `${path.resolve(tree)}\0${st.dev}:${st.ino}:${st.birthtimeNs}`;
  }
}
