import { createHash } from 'node:crypto';
import { BuildError } from '../solver/build-error';
import type { ContentStore } from './content-store';
import type { ImageRef } from './image-ref';
import { Descriptor, imageIndexSchema, imageManifestSchema } from './manifest';
import { mapBounded } from './map-bounded';
import { withRetries } from './registry-retry';
import { INDEX_TYPES } from './oci-media-types';
import { discard, header, parseJson } from './registry-http';
import type { RegistryTransport } from './registry-transport';

/** An image (or index) to push: the manifest's bytes and the blobs it needs, from a store. */
export interface PushImage {
  manifest: Buffer;
  mediaType: string;
  /** Config and layers (for an index: none; its manifests must be pushed first, by digest). */
  blobs: readonly Pick<Descriptor, 'digest' | 'size'>[];
  store: ContentStore;
  /** blobs this push already sent and the registry committed (StreamedUploads): not checked again */
  uploaded?: ReadonlySet<string>;
  /** another repository of the same registry known to hold a blob: it is mounted from there, not sent */
  mountFrom?: (digest: string) => string | undefined;
}

/**
 * Pushes `image` to `ref` (by tag, or by digest when the ref has one): each blob is checked
 * with HEAD and uploaded only when missing (POST + monolithic PUT streamed from the store),
 * several blobs at once, then, once every blob is there, the manifest is PUT. A blob or the
 * manifest that fails transiently (a dropped connection, 5xx, 429) is sent again from the
 * start, twice at most (see withRetries). Returns the manifest's digest.
 */
export async function pushImage(transport: RegistryTransport, ref: ImageRef, image: PushImage, signal?: AbortSignal): Promise<string> {
  const digest = 'sha256:' + createHash('sha256').update(image.manifest).digest('hex');
  if (ref.digest && ref.digest !== digest) {
    throw new BuildError('invalid-argument', `Cannot push ${ref.familiar}: the manifest's digest is ${digest}`);
  }
  // Refuse to send what a registry would reject, with our words rather than its.
  const schema = INDEX_TYPES.includes(image.mediaType) ? imageIndexSchema : imageManifestSchema;
  if (!schema.safeParse(parseJson(image.manifest, 'manifest to push')).success) {
    throw new BuildError('invalid-argument', `Cannot push ${ref.familiar}: the manifest is not a valid ${image.mediaType}`);
  }
  const scope = `repository:${ref.repository}:pull,push`;
  await pushBlobs(transport, ref, scope, image, signal);
  const reference = ref.digest ?? ref.tag ?? digest;
  const url = transport.url(ref.registry, `${ref.repository}/manifests/${reference}`);
  const res = await withRetries(async () => {
    const put = await transport.send(ref, 'push', scope, url, {
      method: 'PUT',
      headers: { 'content-type': image.mediaType, 'content-length': String(image.manifest.length) },
      body: async () => image.manifest,
      signal,
    });
    if (put.statusCode !== 201 && put.statusCode !== 200) throw await transport.fail(put, ref, 'push', 'manifest');
    return put;
  }, signal);
  await discard(res);
  const said = header(res, 'docker-content-digest');
  if (said && said !== digest) {
    throw new BuildError('internal', `Cannot push ${ref.familiar}: ${ref.registry} stored the manifest as ${said}, expected ${digest}`);
  }
  return digest;
}

/** At most this many blob uploads at once (dockerd's --max-concurrent-uploads default). */
const PARALLEL_UPLOADS = 5;

/**
 * Uploads the image's distinct blobs, several at once: one at a time left the link idle while
 * each upload's HEAD and POST went back and forth, and the registry hashed one blob at a time.
 * The first failure stops the uploads still running, and is what the caller sees.
 */
async function pushBlobs(transport: RegistryTransport, ref: ImageRef, scope: string, image: PushImage, signal?: AbortSignal): Promise<void> {
  const unique = [...new Map(image.blobs.map((b) => [b.digest, b])).values()];
  const stop = new AbortController();
  const uploadSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  // mapBounded starts no upload after a failure and returns once every lane is done
  const missing = unique.filter((b) => !image.uploaded?.has(b.digest));
  // a blob whose upload broke off (a dropped connection, a 5xx) is sent again from the start
  await mapBounded(missing, PARALLEL_UPLOADS, (blob) =>
    withRetries(() => pushBlob(transport, ref, scope, blob, image.store, uploadSignal, image.mountFrom?.(blob.digest)), uploadSignal).catch((err: unknown) => {
      stop.abort(err);
      throw err;
    }),
  );
}

async function pushBlob(transport: RegistryTransport, ref: ImageRef, scope: string, blob: Pick<Descriptor, 'digest' | 'size'>, store: ContentStore, signal?: AbortSignal, mountFrom?: string): Promise<void> {
  const head = await transport.send(ref, 'push', scope, transport.url(ref.registry, `${ref.repository}/blobs/${blob.digest}`), { method: 'HEAD', signal });
  await discard(head);
  if (head.statusCode === 200) return;
  if (head.statusCode !== 404) throw await transport.fail(head, ref, 'push', `blob ${blob.digest}`);
  const info = await store.info(blob.digest);
  if (!info) throw new BuildError('not-found', `Cannot push ${ref.familiar}: blob ${blob.digest} is not in the content store`);
  const start = transport.url(ref.registry, `${ref.repository}/blobs/uploads/`);
  // Cross-repository mount: the registry links the blob it has in `mountFrom` (201), or starts
  // a plain upload instead (202). Pulling from that repository too is part of the scope asked.
  if (mountFrom !== undefined) {
    start.searchParams.set('mount', blob.digest);
    start.searchParams.set('from', mountFrom);
  }
  const postScope = mountFrom === undefined ? scope : `${scope} repository:${mountFrom}:pull`;
  const post = await transport.send(ref, 'push', postScope, start, { method: 'POST', headers: { 'content-length': '0' }, signal });
  if (post.statusCode === 201 && mountFrom !== undefined) {
    await discard(post);
    return;
  }
  if (post.statusCode !== 202) throw await transport.fail(post, ref, 'push', `blob ${blob.digest} (starting the upload)`);
  await discard(post);
  const location = header(post, 'location');
  if (!location) throw new BuildError('failed-precondition', `Cannot push ${ref.familiar}: ${ref.registry} started an upload without a Location`);
  // Location may be relative or absolute and carries state in its query (e.g. _state): keep it.
  const put = new URL(location, start);
  put.searchParams.append('digest', blob.digest);
  const res = await transport.send(ref, 'push', scope, put, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(info.size) },
    body: () => store.read(blob.digest),
    signal,
  });
  if (res.statusCode !== 201) throw await transport.fail(res, ref, 'push', `blob ${blob.digest}`);
  await discard(res);
  transport.transferred('push', info.size);
}
