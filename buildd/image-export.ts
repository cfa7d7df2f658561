import { BuildError } from '../solver/build-error';
import { ContentStore } from '../store/content-store';
import { CredentialSource } from '../store/docker-credentials';
import { ImageConfig } from '../store/image-config';
import { parseImageRef } from '../store/image-ref';
import { ImageStore } from '../store/image-store';
import { RegistryClient } from '../store/registry-client';
import { Snapshotter } from '../store/snapshotter';
import { exportDockerArchive } from '../store/docker-archive-exporter';
import { ExportImage, exportOciLayout } from '../store/oci-layout-exporter';
import { boolAttr } from './bool-attr';
import { exportCompression } from './export-compression';
import { BuildSession, ExportSpec, ExporterResponse } from './builder';
import { assembleImage } from '../store/image-assembler';
import { LayerIndex } from '../store/layer-index';
import type { LayerBlobRequest } from '../store/layer-blob';

/** The stores and clients one export uses. */
export interface ImageExportDeps {
  content: ContentStore;
  snapshotter: Snapshotter;
  layers: LayerIndex;
  images: ImageStore;
  registry: RegistryClient;
  credentials: CredentialSource;
}

/**
 * The layers an output asks for. `type=image` without push, when no compression attribute is
 * given, reads no blob: its built layers are described uncompressed and no blob is made
 * (see LayerBlobRequest.lazy), so the build does not wait for compression nothing reads.
 */
function layerRequest(spec: ExportSpec): LayerBlobRequest {
  const request = exportCompression(spec.attrs);
  const asked = ['compression', 'compression-level', 'force-compression'].some((k) => spec.attrs[k] !== undefined);
  if (spec.type === 'image' && !boolAttr(spec.attrs, 'push', false) && !asked) return { ...request, lazy: true };
  return request;
}

/**
 * Runs one `--output`: assembles the image in the content store (layers compressed as the
 * output's compression attributes ask, or described without blobs, see layerRequest), then names it
 * (`type=image`, pushing with `push=true`) or streams it to the client as an OCI layout or
 * Docker archive tar. Returns BuildKit's exporter response keys.
 */
export async function exportImage(
  deps: ImageExportDeps,
  spec: ExportSpec,
  result: string | null,
  image: ImageConfig,
  session: BuildSession,
): Promise<ExporterResponse> {
  const assembled = await assembleImage(deps, result, image, session.signal, layerRequest(spec));
  const names = (spec.attrs.name ?? '').split(',').map((n) => n.trim()).filter((n) => n.length > 0);
  const response: ExporterResponse = {
    'containerimage.digest': assembled.manifestDescriptor.digest,
    'containerimage.config.digest': assembled.configDescriptor.digest,
    'containerimage.descriptor': Buffer.from(JSON.stringify(assembled.manifestDescriptor)).toString('base64'),
  };
  if (names.length > 0) response['image.name'] = names.join(',');
  if (spec.type === 'image') {
    const push = boolAttr(spec.attrs, 'push', false);
    if (push && names.length === 0) throw new BuildError('invalid-argument', 'Cannot push: --output type=image,push=true needs a name=');
    for (const name of names) {
      const ref = parseImageRef(name);
      await deps.images.put(ref.toString(), assembled.manifestDescriptor);
      if (!push) continue;
      // registry.insecure=true, as in BuildKit: TLS to this output's registry is not verified,
      // and plain HTTP is tried where it does not speak TLS. The daemon's settings of every
      // other host (a token server's CA) and of this one (http: false) still hold.
      const insecure = boolAttr(spec.attrs, 'registry.insecure', false);
      const client = insecure ? deps.registry.withInsecureRegistry(ref.registry) : deps.registry;
      try {
        await client.push(ref, {
          manifest: assembled.manifestBytes,
          mediaType: assembled.manifestDescriptor.mediaType,
          blobs: [assembled.configDescriptor, ...assembled.layers],
          store: deps.content,
        }, session.signal);
      } finally {
        if (client !== deps.registry) await client.close();
      }
    }
    return response;
  }
  const archive: ExportImage = {
    manifestDigest: assembled.manifestDescriptor.digest,
    manifest: assembled.manifestBytes,
    mediaType: assembled.manifestDescriptor.mediaType,
    configDigest: assembled.configDescriptor.digest,
    layers: assembled.layers,
    name: names[0] === undefined ? undefined : parseImageRef(names[0]).toString(),
  };
  const out = session.exportStream();
  if (spec.type === 'oci') await exportOciLayout(archive, deps.content, out, session.signal);
  else await exportDockerArchive(archive, deps.content, out, session.signal);
  return response;
}
