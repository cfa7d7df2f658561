import { BuildError } from '../../solver/build-error';
import { parseImageRef } from '../../store/image-ref';
import { sha256Digest } from '../../solver/canonical-json';
import { CacheStore } from '../../solver/cache-store';
import { ContentStore } from '../../store/content-store';
import type { SessionAttachables } from '../../solver/worker';
import type { SessionRegistries } from '../session/session-registries';
import { Snapshotter } from '../../store/snapshotter';
import { LayerIndex } from '../../store/layer-index';
import { unpackLayer } from './unpack-layer';

/** The stores a pull writes to; shared with the rest of the worker. */
export interface PullerDeps {
  /** the registry client of each build (the client's forwarded credentials, or the daemon's) */
  registries: SessionRegistries;
  content: ContentStore;
  snapshotter: Snapshotter;
  cache: CacheStore;
  layers: LayerIndex;
  /** the most bytes one layer may decompress to (maxLayerBytes of the daemon config) */
  maxLayerBytes?: number;
}

/**
 * Unpacks a base image into a chain of committed snapshots, one per layer. Each layer's
 * snapshot is found again by its chain ID (the layer's diff ID and all below it), so two
 * images sharing base layers share snapshots and a pulled layer is never applied twice.
 * Every blob is verified as it streams in; every applied layer's diff ID is checked against
 * the image config.
 */
export class ImagePuller {
  constructor(private readonly deps: PullerDeps) {}

  /** Returns the top snapshot of the image (null for an image without layers). `session`: the build's, whose credentials pull. */
  async pull(ref: string, digest: string, signal: AbortSignal, session?: SessionAttachables): Promise<string | null> {
    const { content, snapshotter, cache } = this.deps;
    const registry = this.deps.registries.forSession(session);
    // the manifest the frontend picked for the stage's platform: a ref pinned to an index's
    // digest would pick again, for this client's default platform
    const pinned = parseImageRef(ref).withDigest(digest).toString();
    const image = await registry.resolve(pinned, signal);
    const diffIds = image.config.rootfs.diff_ids;
    if (diffIds.length !== image.manifest.layers.length) {
      throw new BuildError('invalid-argument', `Cannot unpack ${ref}: ${image.manifest.layers.length} layers but ${diffIds.length} diff_ids in its config`);
    }
    let parent: string | null = null;
    let chainId = '';
    for (let i = 0; i < diffIds.length; i++) {
      signal.throwIfAborted();
      chainId = i === 0 ? diffIds[0] : sha256Digest(`${chainId} ${diffIds[i]}`);
      const key = sha256Digest(`layer-chain ${chainId}`);
      // taken and counted as used in one step (see CacheStore.take)
      const hit = await cache.take(key);
      if (hit?.snapshot && (await snapshotter.get(hit.snapshot))?.kind === 'committed') {
        parent = hit.snapshot;
        continue;
      }
      const desc = image.manifest.layers[i];
      await registry.fetchBlob(pinned, desc, content, signal);
      const id = await unpackLayer(this.deps, parent ?? undefined, desc, diffIds[i], { what: ref, record: { source: 'pull' } }, signal);
      await cache.put({ key, snapshot: id, createdAt: new Date().toISOString(), description: `pulled from ${ref} (layer ${i + 1}/${diffIds.length})` });
      parent = id;
    }
    return parent;
  }
}
