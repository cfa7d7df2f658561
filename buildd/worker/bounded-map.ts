/**
 * A Map that keeps at most `limit` entries, dropping the least recently set one when full.
 * For state one worker call leaves for a later call that may never come (a source's cache
 * key pins what its run uses, but a cache hit skips the run): memory stays bounded for the
 * daemon's whole life whatever the callers do. Lifecycle: owned by one object; nothing to close.
 */
export class BoundedMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Cannot bound a map to ${limit} entries: not a positive integer`);
  }

  get size(): number {
    return this.entries.size;
  }

  set(key: K, value: V): void {
    // Re-inserting moves the key to the newest end of the Map's insertion order.
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.limit) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }

  /** Removes and returns the entry, so state handed to one run is not kept after it. */
  take(key: K): V | undefined {
    const value = this.entries.get(key);
    this.entries.delete(key);
    return value;
  }
}
