import type { OpResult } from './worker';

/**
 * A cache a build imports (buildctl --import-cache): the solver asks it after the daemon's own
 * cache missed. Lifecycle: opened for one build before its solve (its index is read then),
 * dropped after the build; `load` may be called any number of times while the build runs.
 */
export interface CacheSource {
  /** what it is, for logs: `registry localhost:5000/app:cache` */
  readonly name: string;
  /** Whether it holds a result for `key`. Cheap: nothing is downloaded. */
  has(key: string): boolean;
  /**
   * The result of `key` as a committed snapshot of this daemon: its layers downloaded and
   * unpacked now (those already here are reused), and recorded in the daemon's own cache.
   */
  load(key: string, signal: AbortSignal): Promise<OpResult>;
}
