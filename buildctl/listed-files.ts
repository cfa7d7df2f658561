import * as path from 'node:path';
import type { WalkEntry } from './context-walk';

/** A listed file the daemon may ask for: what sending it needs. */
export type ListedFile = Pick<WalkEntry, 'rel' | 'abs' | 'size' | 'mtimeMs'>;

/**
 * The files of a keyed local's listing that have content (regular, not empty), by path, until
 * the daemon asks for them (each once). Columns, not an object per file: an unchanged
 * 20,000-file context is asked for nothing, so its files are never made into objects, and the
 * walk thread sends them as three arrays (see WalkedFiles) instead of 20,000 cloned entries.
 * Lifecycle: one per keyed local of an upload; `add` while listing, `take` while answering.
 */
export class ListedFiles {
  private readonly at = new Map<string, { batch: WalkedFiles; i: number }>();

  /** `root`: the local's directory as walked (a file's host path is root/rel, as the walk made it). */
  constructor(private readonly root: string) {}

  /** The listed files of one batch. */
  add(batch: WalkedFiles): void {
    for (let i = 0; i < batch.rels.length; i++) this.at.set(batch.rels[i] as string, { batch, i });
  }

  /** Entries of a walk made here: those with content. */
  addEntries(entries: readonly WalkEntry[]): void {
    this.add(walkedFiles(entries));
  }

  /** The file at `rel`, once; undefined when it was not listed or was taken already. */
  take(rel: string): ListedFile | undefined {
    const found = this.at.get(rel);
    if (!found) return undefined;
    this.at.delete(rel);
    const { batch, i } = found;
    return { rel, abs: path.join(this.root, rel), size: batch.sizes[i] as number, mtimeMs: batch.mtimes[i] as number };
  }
}

/** The files with content of a batch, column by column (what the walk thread posts). */
export interface WalkedFiles {
  rels: string[];
  sizes: Float64Array;
  mtimes: Float64Array;
}

/** The files with content among `entries`. */
export function walkedFiles(entries: readonly WalkEntry[]): WalkedFiles {
  const files = entries.filter((e) => e.type === 'FILE' && e.size > 0);
  return { rels: files.map((e) => e.rel), sizes: Float64Array.from(files, (e) => e.size), mtimes: Float64Array.from(files, (e) => e.mtimeMs) };
}
