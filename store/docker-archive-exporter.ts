import type { Writable } from 'node:stream';
import type { ContentStore } from './content-store';
import { parseImageRef } from './image-ref';
import { ExportImage, blobMemberName, ociLayoutMembers } from './oci-layout-exporter';
import { writeImageTar } from './image-tar-writer';

/**
 * Writes `image` as a `docker load` archive to `out` (what `--output type=docker` gives):
 * `manifest.json` pointing at the blobs, plus the OCI layout files, as BuildKit's docker
 * exporter writes today, so that the same tar also opens as an OCI layout. Layers stay as
 * stored (gzip is fine for docker load). `out` is ended when this resolves.
 */
export async function exportDockerArchive(image: ExportImage, store: ContentStore, out: Writable, signal?: AbortSignal): Promise<void> {
  const members = await ociLayoutMembers(image, store);
  const ref = image.name ? parseImageRef(image.name) : undefined;
  // docker load tags only name:tag; a digest-only name is loaded untagged.
  const repoTags = ref?.tag ? [ref.withTag(ref.tag).familiar] : [];
  const manifest = [{
    Config: blobMemberName(image.configDigest),
    RepoTags: repoTags,
    Layers: image.layers.map((l) => blobMemberName(l.digest)),
  }];
  members.push({ name: 'manifest.json', kind: 'bytes', data: Buffer.from(JSON.stringify(manifest)) });
  await writeImageTar(members, store, out, signal);
}
