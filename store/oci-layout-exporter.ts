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

export const OCI_REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_IMAGE_NAME = 'io.containerd.image.name';

export function blobMemberName(digest: string): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

/** The members every layout has: oci-layout, index.json and the blobs (deduplicated). */
export async function ociLayoutMembers(image: ExportImage, store: ContentStore): Promise<TarMember[]> {
  const actual = 'sha256:' + createHash('sha256').update(image.manifest).digest('hex');
  if (actual !== image.manifestDigest) {
    throw new BuildError('invalid-argument', `Cannot export image: the manifest's digest is ${actual}, not ${image.manifestDigest}`);
  }
  const config = await store.info(image.configDigest);
  if (!config) throw new BuildError('not-found', `Cannot export image: config ${image.configDigest} is not in the content store`);
  const annotations: Record<string, string> = {};
  if (image.name) {
    const ref = parseImageRef(image.name);
    annotations[CONTAINERD_IMAGE_NAME] = ref.toString();
    if (ref.tag) annotations[OCI_REF_NAME] = ref.tag;
  }
  const index = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: [{
      mediaType: image.mediaType,
      digest: image.manifestDigest,
      size: image.manifest.length,
      ...(Object.keys(annotations).length ? { annotations } : {}),
    }],
  };
  const members: TarMember[] = [
    { name: 'blobs/', kind: 'dir' },
    { name: 'blobs/sha256/', kind: 'dir' },
  ];
  const seen = new Set<string>();
  for (const blob of [...image.layers, config]) {
    if (seen.has(blob.digest)) continue;
    seen.add(blob.digest);
    members.push({ name: blobMemberName(blob.digest), kind: 'blob', digest: blob.digest, size: blob.size });
  }
  members.push(
    { name: blobMemberName(image.manifestDigest), kind: 'bytes', data: image.manifest },
    { name: 'oci-layout', kind: 'bytes', data: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) },
    { name: 'index.json', kind: 'bytes', data: Buffer.from(JSON.stringify(index)) },
  );
  return members;
}

/**
 * Writes `image` as a tar of an OCI image layout to `out` (what `--output type=oci` gives),
 * streaming blobs from `store`. `out` is ended when this resolves.
 */
export async function exportOciLayout(image: ExportImage, store: ContentStore, out: Writable, signal?: AbortSignal): Promise<void> {
  await writeImageTar(await ociLayoutMembers(image, store), store, out, signal);
}
