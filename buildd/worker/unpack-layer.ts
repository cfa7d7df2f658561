import { BuildError } from '../../solver/build-error';
import type { ContentStore } from '../../store/content-store';
import { applyLayer } from '../../store/layer-apply';
import type { LayerIndex, LayerRecord } from '../../store/layer-index';
import type { Descriptor } from '../../store/manifest';
import type { Snapshotter } from '../../store/snapshotter';

/** The stores an unpack reads the blob from and writes the snapshot to. */
export interface UnpackDeps {
  content: ContentStore;
  snapshotter: Snapshotter;
  layers: LayerIndex;
  /** the most bytes one layer may decompress to (maxLayerBytes of the daemon config) */
  maxLayerBytes?: number;
}

/** What an unpacked layer records beside its blob. */
export interface UnpackOptions {
  /** names the layer's source in errors: `ubuntu:24.04`, `cache localhost:5000/app:cache` */
  what: string;
  /** the time the snapshot says it was made (an imported cache's); now when absent */
  createdAt?: string;
  /** the blob's origin and, for a built one, its compression (see LayerRecord) */
  record: Pick<LayerRecord, 'source' | 'compression'>;
}

/**
 * Applies layer blob `blob` (already in the content store) on a new snapshot over `parent`,
 * checks its diff ID, commits it and records the blob as the snapshot's primary (in the commit's
 * transaction), so an export reuses that very blob. Returns the committed snapshot; a failure leaves no snapshot behind.
 */
export async function unpackLayer(deps: UnpackDeps, parent: string | undefined, blob: Descriptor, diffId: string, opts: UnpackOptions, signal: AbortSignal): Promise<string> {
  const active = await deps.snapshotter.prepare(parent, signal);
  try {
    const root = await active.mount();
    const applied = await applyLayer(await deps.content.read(blob.digest), root, signal, deps.maxLayerBytes);
    if (applied.diffId !== diffId) {
      throw new BuildError('invalid-argument', `Cannot unpack ${opts.what}: layer ${blob.digest} has diff ID ${applied.diffId}, expected ${diffId}`);
    }
    // the layer row lands with the snapshot: a snapshot never lacks the blob it came from
    const record = { digest: blob.digest, size: blob.size, diffId, mediaType: blob.mediaType, ...opts.record };
    return await deps.snapshotter.commit(active, { ...(opts.createdAt !== undefined ? { createdAt: opts.createdAt } : {}), within: (id) => deps.layers.putNow(id, record) });
  } finally {
    await active.release();
  }
}
