import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { BuildError } from '../solver/build-error';
import type { ContentStore } from './content-store';
import { digestHex } from './content-store';
import { parseImageRef } from './image-ref';
import type { Descriptor } from './manifest';
import { MediaTypes } from './oci-media-types';
import { TarMember, writeImageTar } from './image-tar-writer';

/**
 * An image to export: the manifest's exact bytes plus the digests they name, all of whose blobs
 * are in the content store. A plain value; the exporter reads it and the store, nothing else.
 */
export interface ExportImage {
  manifestDigest: string;
  manifest: Buffer;
  mediaType: string;
  configDigest: string;
  layers: readonly Pick<Descriptor, 'digest' | 'size'>[];
  /** e.g. `docker.io/library/app:1`; sets annotations (OCI) and RepoTags (Docker). */
  name?: string;
}

/**
 * An image index to export (a multi-platform build's): its exact bytes and the images it
 * names, whose blobs are all in the content store. `name` annotates the index in index.json.
 */
export interface ExportIndex {
  indexDigest: string;
  index: Buffer;
  mediaType: string;
  images: readonly ExportImage[];
  name?: string;
}

export const OCI_REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_IMAGE_NAME = 'io.containerd.image.name';

export function blobMemberName(digest: string): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

/**
 * The members every layout has: oci-layout, index.json and the blobs (deduplicated). For an
 * index, index.json names the index blob (as BuildKit's oci exporter), which names the images.
 */
export async function ociLayoutMembers(top: ExportImage | ExportIndex, store: ContentStore): Promise<TarMember[]> {
  const images = 'indexDigest' in top ? top.images : [top];
  if ('indexDigest' in top) checkDigest(top.index, top.indexDigest, 'index');
  for (const image of images) checkDigest(image.manifest, image.manifestDigest, 'manifest');
  const annotations: Record<string, string> = {};
  if (top.name) {
    const ref = parseImageRef(top.name);
    annotations[CONTAINERD_IMAGE_NAME] = ref.toString();
    if (ref.tag) annotations[OCI_REF_NAME] = ref.tag;
  }
  const [bytes, digest] = 'indexDigest' in top ? [top.index, top.indexDigest] : [top.manifest, top.manifestDigest];
  const index = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: [{
      mediaType: top.mediaType,
      digest,
      size: bytes.length,
      ...(Object.keys(annotations).length ? { annotations } : {}),
    }],
  };
  const members: TarMember[] = [
    { name: 'blobs/', kind: 'dir' },
    { name: 'blobs/sha256/', kind: 'dir' },
  ];
  const seen = new Set<string>();
  for (const image of images) {
    const config = await store.info(image.configDigest);
    if (!config) throw new BuildError('not-found', `Cannot export image: config ${image.configDigest} is not in the content store`);
    for (const blob of [...image.layers, config]) {
      if (seen.has(blob.digest)) continue;
      seen.add(blob.digest);
      members.push({ name: blobMemberName(blob.digest), kind: 'blob', digest: blob.digest, size: blob.size });
    }
  }
  for (const image of images) members.push({ name: blobMemberName(image.manifestDigest), kind: 'bytes', data: image.manifest });
  if ('indexDigest' in top) members.push({ name: blobMemberName(top.indexDigest), kind: 'bytes', data: top.index });
  members.push(
    { name: 'oci-layout', kind: 'bytes', data: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) },
    { name: 'index.json', kind: 'bytes', data: Buffer.from(JSON.stringify(index)) },
  );
  return members;
}

function checkDigest(bytes: Buffer, digest: string, what: string): void {
  const actual = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
  if (actual !== digest) throw new BuildError('invalid-argument', `Cannot export image: the ${what}'s digest is ${actual}, not ${digest}`);
}

/**
 * Writes `image` as a tar of an OCI image layout to `out` (what `--output type=oci` gives),
 * streaming blobs from `store`. `out` is ended when this resolves.
 */
export async function exportOciLayout(image: ExportImage | ExportIndex, store: ContentStore, out: Writable, signal?: AbortSignal): Promise<void> {
  await writeImageTar(await ociLayoutMembers(image, store), store, out, signal);
}
