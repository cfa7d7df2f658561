import { Readable } from 'node:stream';
import { canonicalJson } from '../solver/canonical-json';
import type { ContentStore } from '../store/content-store';
import type { AssembledImage } from '../store/image-assembler';
import type { Descriptor } from '../store/manifest';
import { MediaTypes } from '../store/oci-media-types';
import { normalizePlatform } from '../store/platforms';
import type { ImageConfig } from '../store/image-config';

/**
 * What an image export names, pushes or archives: one image's manifest, or the index of a
 * multi-platform build's. A value made per export.
 */
export interface ExportedTop {
  /** the manifest's or the index's descriptor: what a name points at */
  descriptor: Descriptor;
  /** its exact bytes */
  bytes: Buffer;
  /** the blobs a push of `bytes` needs: an image's config and layers; none for an index */
  blobs: Descriptor[];
  /** an index's manifests (in its order), pushed before it by digest; none for one image */
  children: AssembledImage[];
  /** the one image, when not an index */
  image?: AssembledImage;
}

/** One image, as exported alone. */
export function single(image: AssembledImage): ExportedTop {
  return { descriptor: image.manifestDescriptor, bytes: image.manifestBytes, blobs: [image.configDescriptor, ...image.layers], children: [], image };
}

/**
 * The index of `images` (one per platform, in the order asked for), written to the content
 * store: an OCI image index, or with `dockerTypes` a Docker manifest list, as BuildKit's image
 * exporter writes with oci-mediatypes=false. Each entry has its image's platform, normalized
 * (no variant for arm64, v7 for arm).
 */
export async function imageIndex(content: ContentStore, images: readonly AssembledImage[], configs: ReadonlyArray<{ image: ImageConfig }>, dockerTypes: boolean, signal: AbortSignal): Promise<ExportedTop> {
  const mediaType = dockerTypes ? MediaTypes.dockerManifestList : MediaTypes.ociIndex;
  const manifests = images.map((a, i) => {
    const config = (configs[i] as { image: ImageConfig }).image;
    const p = normalizePlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) });
    return { ...a.manifestDescriptor, platform: { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) } };
  });
  const bytes = Buffer.from(canonicalJson({ schemaVersion: 2, mediaType, manifests }));
  const info = await content.ingest(Readable.from([bytes]), {}, signal);
  return { descriptor: { mediaType, digest: info.digest, size: info.size }, bytes, blobs: [], children: [...images] };
}
