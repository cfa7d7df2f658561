import { BuildError } from '../solver/build-error';
import { ContentStore } from '../store/content-store';
import { ImageConfig } from '../store/image-config';
import { parseImageRef, type ImageRef } from '../store/image-ref';
import type { EmbeddedRegistry } from './registry/embedded-registry';
import { ImageStore } from '../store/image-store';
import { RegistryClient } from '../store/registry-client';
import { Snapshotter } from '../store/snapshotter';
import { exportDockerArchive } from '../store/docker-archive-exporter';
import { ExportImage, type ExportIndex, exportOciLayout } from '../store/oci-layout-exporter';
import { imageIndex, single, type ExportedTop } from './image-index';
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

/** One platform's image of a build: its result and the frontend's config for it. */
export interface PlatformImage {
  result: string | null;
  image: ImageConfig;
  /** how many of image's history entries came with its base image (they keep their times) */
  baseHistory: number;
}

/**
 * Runs one `--output`: assembles the image in the content store (layers compressed as the
 * output's compression attributes ask, or described without blobs, see layerRequest), then names it
 * (`type=image`, pushing with `push=true`) or streams it to the client as an OCI layout or
 * Docker archive tar. Returns BuildKit's exporter response keys.
 *
 * `images` of a multi-platform build (more than one, or `index` set) become one image index
 * (an OCI index, or a Docker manifest list with `oci-mediatypes=false`), each manifest with its
 * platform, in the order given: named, pushed (its manifests by digest first) and archived as
 * one, as BuildKit's image and oci exporters; the docker exporter refuses it, as BuildKit's.
 */
export async function exportImage(
  deps: ImageExportDeps,
  spec: ExportSpec,
  images: readonly PlatformImage[],
  session: BuildSession,
  /** SOURCE_DATE_EPOCH of this output (see source-date-epoch.ts): clamps the config's times, and with rewrite-timestamp the layers' */
  epoch?: number,
  /** members the config gets once its layers are known (--export-cache type=inline) */
  configExtras?: AssembleOptions['configExtras'],
  /** an index even of one image (BuildKit's multi-platform=true) */
  index = images.length > 1,
): Promise<ExporterResponse> {
  if (index && spec.type === 'docker') throw new BuildError('invalid-argument', 'Cannot export with --output type=docker: docker exporter does not currently support exporting manifest lists');
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
    const dockerTypes = !exportOciTypes(spec);
    const assembled = await Promise.all(images.map((p) => {
      const platform = [p.image.os, p.image.architecture, p.image.variant].filter((x) => x !== undefined && x !== '').join('/');
      return assembleImage(deps, p.result, p.image, session.signal, layerRequest(spec, epoch), { tee: streamed, annotations: manifestAnnotations(spec.attrs, platform), epoch, baseHistory: p.baseHistory, dockerTypes, ...(configExtras ? { configExtras } : {}) });
    }));
    const top = index ? await imageIndex(deps.content, assembled, images, dockerTypes, session.signal) : single(assembled[0] as AssembledImage);
    const response: ExporterResponse = {
      'containerimage.digest': top.descriptor.digest,
      // as BuildKit: an index has no one config
      ...(index ? {} : { 'containerimage.config.digest': (assembled[0] as AssembledImage).configDescriptor.digest }),
      'containerimage.descriptor': Buffer.from(JSON.stringify(top.descriptor)).toString('base64'),
    };
    if (names.length > 0) response['image.name'] = names.join(',');
    if (spec.type === 'image') {
      for (const name of names) await deps.images.put(parseImageRef(name).toString(), top.descriptor);
      for (const ref of own) await publishOwn(deps.embedded as EmbeddedRegistry, ref, top);
      for (const p of pushes) {
        const uploaded = p === first ? streamed?.uploaded : undefined;
        // an index's manifests go first, by digest: the registry takes no index naming a manifest it lacks
        for (const child of top.children) {
          await p.client.push(p.ref.withoutTag().withDigest(child.manifestDescriptor.digest), { manifest: child.manifestBytes, mediaType: child.manifestDescriptor.mediaType, blobs: [child.configDescriptor, ...child.layers], store: deps.content, uploaded }, session.signal);
        }
        await p.client.push(p.ref, { manifest: top.bytes, mediaType: top.descriptor.mediaType, blobs: top.blobs, store: deps.content, uploaded }, session.signal);
      }
      return response;
    }
    return await exportArchive(deps, spec, top, names, session, response);
  } finally {
    await Promise.all(opened.map((c) => c.close()));
  }
}

/** A push to the daemon's own registry: the image's blobs are in its content store already. */
async function publishOwn(embedded: EmbeddedRegistry, ref: ImageRef, top: ExportedTop): Promise<void> {
  const digest = top.descriptor.digest;
  if (ref.digest !== undefined && ref.digest !== digest) throw new BuildError('invalid-argument', `Cannot push ${ref.familiar}: the manifest's digest is ${digest}`);
  // an index's manifests are linked first, untagged
  for (const child of top.children) {
    await embedded.publish({
      repository: ref.repository,
      manifestDigest: child.manifestDescriptor.digest,
      manifestSize: child.manifestDescriptor.size,
      mediaType: child.manifestDescriptor.mediaType,
      blobs: [child.configDescriptor, ...child.layers],
    });
  }
  await embedded.publish({ repository: ref.repository, tag: ref.tag, manifestDigest: digest, manifestSize: top.descriptor.size, mediaType: top.descriptor.mediaType, blobs: top.blobs });
}

/** `type=oci` and `type=docker`: the assembled image (or index) as a tar streamed to the client. */
async function exportArchive(
  deps: ImageExportDeps,
  spec: ExportSpec,
  top: ExportedTop,
  names: string[],
  session: BuildSession,
  response: ExporterResponse,
): Promise<ExporterResponse> {
  const name = names[0] === undefined ? undefined : parseImageRef(names[0]).toString();
  const archived = (a: AssembledImage): ExportImage => ({
    manifestDigest: a.manifestDescriptor.digest,
    manifest: a.manifestBytes,
    mediaType: a.manifestDescriptor.mediaType,
    configDigest: a.configDescriptor.digest,
    layers: a.layers,
  });
  const out = session.exportStream();
  if (top.children.length > 0 || top.image === undefined) {
    // an index: index.json names it, with the image's name (BuildKit's oci exporter)
    const layout: ExportIndex = { indexDigest: top.descriptor.digest, index: top.bytes, mediaType: top.descriptor.mediaType, images: top.children.map(archived), ...(name ? { name } : {}) };
    await exportOciLayout(layout, deps.content, out, session.signal);
    return response;
  }
  const archive: ExportImage = { ...archived(top.image), ...(name ? { name } : {}) };
  if (spec.type === 'oci') await exportOciLayout(archive, deps.content, out, session.signal);
  else await exportDockerArchive(archive, deps.content, out, session.signal);
  return response;
}
