import type { ListedEntry } from './listing-checksum';

/** A kept tree's listing and the digest of each of its regular files (path → hex sha256). */
export interface KeptListing {
  entries: readonly ListedEntry[];
  digests: ReadonlyMap<string, string>;
}

/** Trees remembered: a few builds' contexts (a 20,000-file listing is a few MB). */
const MAX_TREES = 4;

/**
 * The listings of the kept locals' current generations, by tree path, for the COPY checksum of
 * a whole kept context without walking it (checksumOfListing): the daemon made each tree from
 * its listing and knows every file's digest (received and hashed, or carried over unchanged from
 * the generation before). In memory only: after a restart the first checksum of each tree walks.
 *
 * Lifecycle: one per process ({@link defaultKeptListings}); the receiver sets a tree's listing
 * when it publishes the generation and forgets it when the tree is claimed or goes; entries
 * also leave least recently used first.
 */
export class KeptListings {
  private readonly trees = new Map<string, KeptListing>();

  set(tree: string, listing: KeptListing): void {
    this.trees.delete(tree);
    this.trees.set(tree, listing);
    while (this.trees.size > MAX_TREES) this.trees.delete(this.trees.keys().next().value as string);
  }

  get(tree: string): KeptListing | undefined {
    const listing = this.trees.get(tree);
    if (listing) this.set(tree, listing);
    return listing;
  }

  delete(tree: string): void {
    this.trees.delete(tree);
  }
}

/** The process's kept listings (the receiver writes, the COPY checksum reads). */
export const defaultKeptListings = new KeptListings();
