/**
 * Media types of the OCI image spec and of Docker's schema 2, the ones a registry serves.
 * Docker's names are accepted on pull and kept as they are; our own images use OCI's.
 */
export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** Manifest types that describe one image (config + layers). */
export const IMAGE_MANIFEST_TYPES: readonly string[] = [MediaTypes.ociManifest, MediaTypes.dockerManifest];

/** Manifest types that list per-platform manifests. */
export const INDEX_TYPES: readonly string[] = [MediaTypes.ociIndex, MediaTypes.dockerManifestList];

/** The Accept header of a manifest GET: everything we can parse, best first. */
export const MANIFEST_ACCEPT: string = [
  MediaTypes.ociIndex,
  MediaTypes.dockerManifestList,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifest,
].join(', ');

/** Our manifests are OCI; a Docker layer type names the same bytes under another name. */
export function ociLayerType(mediaType: string): string {
  if (mediaType === MediaTypes.dockerLayerGzip) return MediaTypes.ociLayerGzip;
  if (mediaType === MediaTypes.dockerLayer) return MediaTypes.ociLayer;
  return mediaType;
}
