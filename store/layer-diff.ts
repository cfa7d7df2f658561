import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { teeInto, type BlobTee, type BlobTeeSink } from './blob-tee';
import type { ContentStore } from './content-store';
import { createCompressor, DEFAULT_COMPRESSION, layerMediaType, type LayerCompression } from './layer-compression';
import type { Snapshotter } from './snapshotter';
import { layerTarEntries, type TarPlacing, type WalkState } from './layer-tar-walk';
import { rewriteTarTimes } from './tar-times';
import { assertOverlayXattrsReadable } from './trusted-xattr-probe';

/** A layer blob as an image manifest and config refer to it. */
export interface LayerDescriptor {
  /** digest of the compressed blob in the content store */
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar (the image config's rootfs.diff_ids) */
  diffId: string;
  /** bytes of the uncompressed tar */
  diffSize: number;
  /** the OCI layer type of `compression` */
  mediaType: string;
  compression: LayerCompression;
  /** true when the snapshot changed nothing (the tar has no entries) */
  empty: boolean;
}

/**
 * Turns the changes of snapshot `id` (its overlay upper dir) into an OCI layer in the content
 * store. The tar is written in sorted order (a directory before its contents, names in byte
 * order), with nothing taken from the clock, so the same upper dir gives the same digest.
 * Streamed: tar → sha256 (diffId) → compressor (`compression`, gzip at zlib's default level
 * unless told) → content store, one file at a time; a failed compressor stores nothing.
 * With a `tee`, the compressed bytes also go to its sink as they are made (a push uploading
 * while it compresses); the sink's failure is not the layer's.
 *
 * Extended attributes: as containerd's and Docker's archive writers (what the reference
 * BuildKit exports through), an entry carries only security.capability, in a
 * SCHILY.xattr.security.capability PAX record; user.* and the rest stay out, and overlayfs'
 * own trusted.overlay.* (user.overlay.* when rootless) never go in. A directory's opaque="y" is read as the
 * walk passes it and becomes a `.wh..wh..opq` entry; any failure to read attributes fails the
 * export (a missed opaque marker would bring deleted files back into the image).
 */
export async function diffToLayer(
  snapshotter: Pick<Snapshotter, 'upperDir' | 'overlayXattrs'>,
  id: string,
  contentStore: ContentStore,
  signal?: AbortSignal,
  compression: LayerCompression = DEFAULT_COMPRESSION,
  tee?: BlobTee,
  /** rewrite-timestamp: every time in the tar later than this (seconds) becomes it */
  clampTimesTo?: number,
): Promise<LayerDescriptor> {
  const upper = await snapshotter.upperDir(id);
  // rootless overlay mounts (userxattr) mark opaque directories with user.overlay.opaque
  const namespace = snapshotter.overlayXattrs ?? 'trusted';
  const opaqueXattr = `${namespace}.overlay.opaque`;
  // The snapshot's own dir holds `upper` and sits on its filesystem; a probe there leaves the layer alone.
  await assertOverlayXattrsReadable(path.dirname(upper), namespace, 'overlay opaque markers');
  // Stops the walker (and closes its open file) when the consuming side fails first.
  const stop = new AbortController();
  const walkSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const diffHash = createHash('sha256');
  const counter: WalkState = { entries: 0 };
  let diffSize = 0;
  const compressor = createCompressor(compression);
  const walked = layerTar(upper, opaqueXattr, counter, walkSignal);
  const compressing = pipeline(
    clampTimesTo === undefined ? walked : rewriteTarTimes(walked, clampTimesTo, 'clamp'),
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const batch of coalesce(chunks)) {
        diffHash.update(batch);
        diffSize += batch.length;
        yield batch;
      }
    },
    compressor,
    { signal: walkSignal },
  );
  compressing.catch(() => undefined);
  const sink = await openTee(tee);
  const teeState: { failed?: unknown } = {};
  const ingesting = contentStore.ingest(sink ? teeInto(compressor, sink.body, teeState) : compressor, {}, signal);
  let blob;
  try {
    [blob] = await Promise.all([ingesting, compressing]);
  } catch (err) {
    stop.abort(err);
    compressor.destroy();
    sink?.abort(err);
    // The store removes its partial file as it settles: no half blob outlives the failure.
    await Promise.allSettled([ingesting, compressing]);
    // The walk's own failure (say, unreadable attributes) is the cause; the store then only
    // saw its input end early.
    throw counter.error ?? err;
  }
  if (sink) {
    if (teeState.failed === undefined) await sink.done(blob);
    else sink.abort(teeState.failed);
  }
  return { digest: blob.digest, size: blob.size, diffId: 'sha256:' + diffHash.digest('hex'), diffSize, mediaType: layerMediaType(compression), compression, empty: counter.entries === 0 };
}

/** The tee's sink for one blob; a tee that cannot open one leaves the blob without (never fails it). */
async function openTee(tee: BlobTee | undefined): Promise<BlobTeeSink | undefined> {
  if (!tee) return undefined;
  return tee.open().catch(() => undefined);
}

/** What a layer's tar is without it being stored: the image config's diff ID and the tar's size. */
export interface LayerMeasure {
  diffId: string;
  diffSize: number;
  empty: boolean;
}

/**
 * The diff ID and size of the layer tar diffToLayer would write for snapshot `id`, walked the
 * same way (the same bytes) but hashed and counted only: for an image that nothing reads as
 * blobs yet (`type=image` without push), whose blobs are made when a push or a tar needs them.
 */
export async function measureLayer(snapshotter: Pick<Snapshotter, 'upperDir' | 'overlayXattrs'>, id: string, signal?: AbortSignal): Promise<LayerMeasure> {
  const upper = await snapshotter.upperDir(id);
  const namespace = snapshotter.overlayXattrs ?? 'trusted';
  await assertOverlayXattrsReadable(path.dirname(upper), namespace, 'overlay opaque markers');
  const hash = createHash('sha256');
  const counter: WalkState = { entries: 0 };
  let diffSize = 0;
  for await (const chunk of layerTar(upper, `${namespace}.overlay.opaque`, counter, signal ?? new AbortController().signal)) {
    hash.update(chunk);
    diffSize += chunk.length;
  }
  return { diffId: 'sha256:' + hash.digest('hex'), diffSize, empty: counter.entries === 0 };
}

const BATCH = 64 * 1024;

/**
 * The same bytes in pieces of about BATCH: a tar of small files is mostly 512-byte headers and
 * short contents, and each piece handed to zlib (or to zstd's pipe) costs a round trip of its
 * own. Compressed output does not depend on how its input was cut. Holds at most one batch.
 */
async function* coalesce(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    if (size === 0 && chunk.length >= BATCH) {
      yield chunk;
      continue;
    }
    pending.push(chunk);
    size += chunk.length;
    if (size >= BATCH) {
      yield Buffer.concat(pending, size);
      pending = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}

/**
 * A tar of a whole filesystem as a mounted view shows it (BuildKit's `tar` and `local`
 * outputs): every entry with its mode, owner, time and file capability, in the layer tar's
 * order and format, hard links kept; no whiteouts or opaque markers (a merged view has none).
 */
export async function* filesystemTar(root: string, signal: AbortSignal, placing?: TarPlacing): AsyncGenerator<Buffer> {
  yield* layerTarEntries(root, undefined, { entries: 0 }, signal, undefined, placing);
}

async function* layerTar(upper: string, opaqueXattr: string, counter: WalkState, signal: AbortSignal): AsyncGenerator<Buffer> {
  try {
    yield* layerTarEntries(upper, opaqueXattr, counter, signal);
  } catch (err) {
    counter.error = err;
    throw err;
  }
}
