import { BuildError } from '../solver/build-error';
import { ContentStore } from '../store/content-store';
import { ImageConfig } from '../store/image-config';
import { parseImageRef, type ImageRef } from '../store/image-ref';
import type { EmbeddedRegistry } from './registry/embedded-registry';
import { ImageStore } from '../store/image-store';
import { RegistryClient } from '../store/registry-client';
import { Snapshotter } from '../store/snapshotter';
import { exportDockerArchive } from '../store/docker-archive-exporter';
import { ExportImage, exportOciLayout } from '../store/oci-layout-exporter';
import { boolAttr } from './bool-attr';
import { manifestAnnotations } from './manifest-annotations';
import { exportCompression } from './export-compression';
import { exportOciTypes } from './export-media-types';
import { BuildSession, ExportSpec, ExporterResponse } from './builder';
import { assembleImage, type AssembledImage, type AssembleOptions } from '../store/image-assembler';
import { LayerIndex } from '../store/layer-index';
import type { LayerBlobRequest } from '../store/layer-blob';

/** The stores and clients one export uses. */
export interface ImageExportDeps {
  content: ContentStore;
  snapshotter: Snapshotter;
  layers: LayerIndex;
  images: ImageStore;
  /** the build's registry client (with the credentials its client forwards) */
  registry: RegistryClient;
  /** the daemon's own registry, when it serves one: a push to its address links instead of uploading */
  embedded?: EmbeddedRegistry;
}

/**
 * The layers an output asks for. `type=image` without push, when no compression attribute is
 * given, reads no blob: its built layers are described uncompressed and no blob is made
 * (see LayerBlobRequest.lazy), so the build does not wait for compression nothing reads.
 */
export function layerRequest(spec: ExportSpec, epoch: number | undefined): LayerBlobRequest {
  const request: LayerBlobRequest = exportCompression(spec.attrs);
  // rewrite-timestamp=true, as BuildKit: the built layers' file times are clamped to the epoch
  if (epoch !== undefined && boolAttr(spec.attrs, 'rewrite-timestamp', false)) request.epoch = epoch;
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
  /** SOURCE_DATE_EPOCH of this output (see source-date-epoch.ts): clamps the config's times, and with rewrite-timestamp the layers' */
  epoch?: number,
  /** how many of image's history entries came with its base image (they keep their times) */
  baseHistory = 0,
  /** members the config gets once its layers are known (--export-cache type=inline) */
  configExtras?: AssembleOptions['configExtras'],
): Promise<ExporterResponse> {
  const names = (spec.attrs.name ?? '').split(',').map((n) => n.trim()).filter((n) => n.length > 0);
  const push = spec.type === 'image' && boolAttr(spec.attrs, 'push', false);
  if (push && names.length === 0) throw new BuildError('invalid-argument', 'Cannot push: --output type=image,push=true needs a name=');
  // registry.insecure=true, as in BuildKit: TLS to this output's registry is not verified,
  // and plain HTTP is tried where it does not speak TLS. The daemon's settings of every
  // other host (a token server's CA) and of this one (http: false) still hold.
  const insecure = boolAttr(spec.attrs, 'registry.insecure', false);
  const opened: RegistryClient[] = [];
  const clientFor = (registry: string): RegistryClient => {
    if (!insecure) return deps.registry;
    const client = deps.registry.withInsecureRegistry(registry);
    opened.push(client);
    return client;
  };
  try {
    // push-by-digest=true, as BuildKit: the manifest goes by its digest, no tag is set
    const byDigest = push && boolAttr(spec.attrs, 'push-by-digest', false);
    const refs = push ? names.map((name) => (byDigest ? parseImageRef(name).withoutTag() : parseImageRef(name))) : [];
    // a push to the daemon's own registry links what the content store holds, over no wire
    const own = refs.filter((ref) => deps.embedded?.serves(ref.registry));
    const pushes = refs.filter((ref) => !own.includes(ref)).map((ref) => ({ ref, client: clientFor(ref.registry) }));
    // The first name's registry receives each new layer while it is compressed, as dockerd
    // pushes: compressing everything first and uploading after left the link idle, then the
    // cores (see StreamedUploads; what it could not send, the push below sends).
    const first = pushes[0];
    const streamed = first?.client?.streamedUploads(first.ref, session.signal);
    const platform = [image.os, image.architecture, image.variant].filter((p) => p !== undefined && p !== '').join('/');
    const assembled = await assembleImage(deps, result, image, session.signal, layerRequest(spec, epoch), { tee: streamed, annotations: manifestAnnotations(spec.attrs, platform), epoch, baseHistory, dockerTypes: !exportOciTypes(spec), ...(configExtras ? { configExtras } : {}) });
    const response: ExporterResponse = {
      'containerimage.digest': assembled.manifestDescriptor.digest,
      'containerimage.config.digest': assembled.configDescriptor.digest,
      'containerimage.descriptor': Buffer.from(JSON.stringify(assembled.manifestDescriptor)).toString('base64'),
    };
    if (names.length > 0) response['image.name'] = names.join(',');
    if (spec.type === 'image') {
      for (const name of names) await deps.images.put(parseImageRef(name).toString(), assembled.manifestDescriptor);
      for (const ref of own) await publishOwn(deps.embedded as EmbeddedRegistry, ref, assembled);
      for (const p of pushes) {
        await p.client.push(p.ref, {
          manifest: assembled.manifestBytes,
          mediaType: assembled.manifestDescriptor.mediaType,
          blobs: [assembled.configDescriptor, ...assembled.layers],
          store: deps.content,
          uploaded: p === first ? streamed?.uploaded : undefined,
        }, session.signal);
      }
      return response;
    }
    return await exportArchive(deps, spec, assembled, names, session, response);
  } finally {
    await Promise.all(opened.map((c) => c.close()));
  }
}

/** A push to the daemon's own registry: the image's blobs are in its content store already. */
async function publishOwn(embedded: EmbeddedRegistry, ref: ImageRef, assembled: AssembledImage): Promise<void> {
  const digest = assembled.manifestDescriptor.digest;
  if (ref.digest !== undefined && ref.digest !== digest) throw new BuildError('invalid-argument', `Cannot push ${ref.familiar}: the manifest's digest is ${digest}`);
  await embedded.publish({
    repository: ref.repository,
    tag: ref.tag,
    manifestDigest: digest,
    manifestSize: assembled.manifestDescriptor.size,
    mediaType: assembled.manifestDescriptor.mediaType,
    blobs: [assembled.configDescriptor, ...assembled.layers],
  });
}

/** `type=oci` and `type=docker`: the assembled image as a tar streamed to the client. */
async function exportArchive(
  deps: ImageExportDeps,
  spec: ExportSpec,
  assembled: AssembledImage,
  names: string[],
  session: BuildSession,
  response: ExporterResponse,
): Promise<ExporterResponse> {
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
