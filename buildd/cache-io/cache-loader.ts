import { BuildError } from '../../solver/build-error';
import { sha256Digest } from '../../solver/canonical-json';
import type { CacheStore } from '../../solver/cache-store';
import type { CacheConfig, CacheRecordEntry } from '../../solver/cache-io/cache-config';
import type { Descriptor } from '../../store/manifest';
import { unpackLayer, type UnpackDeps } from '../worker/unpack-layer';

/** Brings one blob of an imported cache into the content store (a no-op when it is there). */
export type BlobFetch = (blob: Descriptor, signal: AbortSignal) => Promise<void>;

/** An unpack shared by the builds that wait on it (see CacheLoader.once). */
interface SharedUnpack {
  promise: Promise<string>;
  controller: AbortController;
  waiting: number;
}

/** An imported cache's index, as the loader reads it. */
export interface ImportedIndex {
  /** what it is, for errors and descriptions: `registry localhost:5000/app:cache` */
  name: string;
  /** the reference it was read from (normalized) */
  ref: string;
  config: CacheConfig;
  /** the manifest's layers, at the positions of config.layers */
  blobs: readonly Descriptor[];
  fetch: BlobFetch;
}

/**
 * Turns imported cache records into snapshots of this daemon, one layer at a time from the
 * base: a layer already unpacked (same chain of diff IDs and same creation time) is reused, so
 * records sharing a base share its snapshots, and two builds loading the same layer at once
 * unpack it once. Each layer keeps the blob it came as (an image export reuses it) and the time
 * its first build made it (images date their history from it), so an image assembled from an
 * imported result has the digest the exporting daemon's had. The record then goes into the
 * daemon's own cache, and the next build finds it there.
 *
 * Lifecycle: one per daemon, shared by every build's imports.
 */
export class CacheLoader {
  private readonly unpacking = new Map<string, SharedUnpack>();

  constructor(private readonly deps: UnpackDeps & { cache: CacheStore }) {}

  /** The committed snapshot of `record` of `index` (null: the empty filesystem). */
  async load(index: ImportedIndex, record: CacheRecordEntry, signal: AbortSignal): Promise<string | null> {
    let parent: string | undefined;
    let chainId = '';
    for (const [i, entry] of record.chain.entries()) {
      signal.throwIfAborted();
      const layer = index.config.layers[entry.layer];
      // every layer's time below counts too: a snapshot dates the history of each layer under it
      chainId = sha256Digest(`${chainId} ${layer.diffId} ${entry.createdAt}`);
      const key = sha256Digest(`imported-layer ${chainId}`);
      const below = parent;
      const what = `layer ${i + 1}/${record.chain.length} of ${index.name}`;
      parent = await this.once(key, signal, (shared) => this.layer(key, below, index, entry.layer, entry.createdAt, what, shared));
    }
    await this.deps.cache.put({ key: record.key, snapshot: parent ?? null, createdAt: new Date().toISOString(), description: record.description ?? `imported from ${index.name}` });
    return parent ?? null;
  }

  /**
   * One unpack of `key` for every build that needs it at the same time: it runs on a signal of
   * its own, aborted only when the last build waiting on it has left, so a build cancelled
   * first neither breaks nor holds the others' load.
   */
  private once(key: string, signal: AbortSignal, make: (shared: AbortSignal) => Promise<string>): Promise<string> {
    let unpack = this.unpacking.get(key);
    if (unpack === undefined) {
      const controller = new AbortController();
      const promise = make(controller.signal).finally(() => this.unpacking.delete(key));
      // a waiter that left has its own rejection; nobody may be left to hear this one
      promise.catch(() => undefined);
      unpack = { promise, controller, waiting: 0 };
      this.unpacking.set(key, unpack);
    }
    const shared = unpack;
    shared.waiting++;
    return new Promise<string>((resolve, reject) => {
      const leave = (): void => {
        signal.removeEventListener('abort', onAbort);
        shared.waiting--;
      };
      const onAbort = (): void => {
        leave();
        if (shared.waiting === 0) shared.controller.abort(signal.reason);
        reject(new BuildError('cancelled', 'Cannot load an imported cache layer: the build was cancelled'));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(
        (id) => (leave(), resolve(id)),
        (err: unknown) => (leave(), reject(err)),
      );
    });
  }

  private async layer(key: string, parent: string | undefined, index: ImportedIndex, position: number, createdAt: string, what: string, signal: AbortSignal): Promise<string> {
    const { cache, snapshotter } = this.deps;
    // taken and counted as used in one step (see CacheStore.take)
    const hit = await cache.take(key);
    if (hit?.snapshot && (await snapshotter.get(hit.snapshot))?.kind === 'committed') return hit.snapshot;
    const blob = index.blobs[position];
    const layer = index.config.layers[position];
    await index.fetch(blob, signal);
    const record = layer.origin === 'build' ? { source: 'build' as const, ...(layer.compression ? { compression: layer.compression } : {}) } : { source: 'pull' as const };
    const id = await unpackLayer(this.deps, parent, blob, layer.diffId, { what, createdAt, record }, signal);
    await cache.put({ key, snapshot: id, createdAt: new Date().toISOString(), description: `imported ${what}` });
    return id;
  }
}
