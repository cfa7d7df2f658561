import { pickManifest, platformId, type PlatformLike } from './platforms';
import { traced } from './traced';
import { createHash } from 'node:crypto';
import { BuildError } from '../solver/build-error';
import { describeZodError } from '../solver/describe-zod-error';
import type { Dispatcher } from 'undici';
import type { BlobInfo, ContentStore } from './content-store';
import type { CredentialSource } from './docker-credentials';
import { ImageConfig, imageConfigSchema } from './image-config';
import { ImageRef, parseImageRef } from './image-ref';
import { Descriptor, ImageManifest, imageIndexSchema, imageManifestSchema } from './manifest';
import { INDEX_TYPES, MANIFEST_ACCEPT } from './oci-media-types';
import { PushImage, pushImage } from './registry-push';
import { StreamedUploads } from './streamed-upload';
import { hostKey } from './registry-hosts';
import { withRetries } from './registry-retry';
import { HttpResponse, discard, header, parseJson, readCapped, sendRequest } from './registry-http';
import { RegistryTransport, RegistryTransportOptions } from './registry-transport';

/** Manifests and configs are small; anything bigger is refused before it is parsed. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

/** What `resolve` learns about an image, for one platform. */
export interface ResolvedImage {
  /** The normalized reference that was resolved (`docker.io/library/busybox:latest`). */
  ref: string;
  /** Digest of the platform's image manifest (the one `manifest` is). */
  digest: string;
  /** Digest of the index or manifest list the tag pointed at, when it was one. */
  indexDigest?: string;
  manifest: ImageManifest;
  /** The manifest exactly as served: its sha256 is `digest`. */
  manifestBytes: Buffer;
  mediaType: string;
  config: ImageConfig;
  configDescriptor: Descriptor;
}

/** Options of a RegistryClient. */
export interface RegistryClientOptions extends RegistryTransportOptions {
  /** The platform picked from an index; linux/amd64 unless said. */
  platform?: PlatformLike;
}

function sha256(bytes: Buffer): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

function asRef(ref: ImageRef | string): ImageRef {
  return typeof ref === 'string' ? parseImageRef(ref) : ref;
}

function pullScope(ref: ImageRef): string {
  return `repository:${ref.repository}:pull`;
}

/** Blob origins remembered for cross-repository mounts. */
const MAX_ORIGINS = 10_000;

/**
 * Pulls and pushes images over the distribution API (OCI and Docker schema 2).
 *
 * Lifecycle: create one per daemon (or per build), share it across builds so that tokens and
 * connections are reused; `close` when done to release its connections.
 */
export class RegistryClient {
  private readonly transport: RegistryTransport;
  private readonly platform: PlatformLike;
  /** where pulled blobs came from (digest → registry and repository), for cross-repository mounts */
  private readonly origins: Map<string, { registry: string; repository: string }>;

  /** `shared`: another client's connections and blob origins (see withCredentials); never closed by this one. */
  constructor(
    private readonly opts: RegistryClientOptions = {},
    shared?: { dispatcher: Dispatcher; origins: Map<string, { registry: string; repository: string }> },
  ) {
    this.transport = new RegistryTransport(shared ? { ...opts, dispatcher: shared.dispatcher } : opts);
    this.origins = shared?.origins ?? new Map();
    this.platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  }

  /**
   * A client for one build with other credentials (the ones its client forwards): its own
   * challenges and tokens, so nothing fetched with these credentials serves anyone else, over
   * this client's connections and with the blob origins it knows. close() it after the build;
   * that leaves this client's connections open.
   */
  withCredentials(credentials: CredentialSource): RegistryClient {
    return new RegistryClient({ ...this.opts, credentials }, { dispatcher: this.transport.dispatcher, origins: this.origins });
  }

  /**
   * A new client with this one's settings (every host's of `registries`, credentials,
   * platform) and `registry` treated as `insecure` on top, for one push with the output
   * attribute `registry.insecure=true`. Its own connections and tokens: close it after use.
   */
  withInsecureRegistry(registry: string): RegistryClient {
    return new RegistryClient({ ...this.opts, insecureRegistries: [...(this.opts.insecureRegistries ?? []), registry] });
  }

  /**
   * Fetches the manifest (picking `platform`, default this client's, from an index) and the
   * config; from the registry's mirrors first when it has some (the result names `refIn`).
   */
  async resolve(refIn: ImageRef | string, signal?: AbortSignal, platform: PlatformLike = this.platform): Promise<ResolvedImage> {
    const ref = asRef(refIn);
    return traced('registry.resolve', { 'registry.ref': ref.familiar }, () => this.resolveTraced(ref, signal, platform));
  }

  private async resolveTraced(ref: ImageRef, signal: AbortSignal | undefined, platform: PlatformLike): Promise<ResolvedImage> {
    const resolved = await this.viaMirrors(ref, (from) => this.resolveFrom(from, signal, platform), signal);
    return { ...resolved, ref: ref.toString() };
  }

  private async resolveFrom(ref: ImageRef, signal: AbortSignal | undefined, platform: PlatformLike): Promise<ResolvedImage> {
    let got = await this.getManifest(ref, ref.digest ?? (ref.tag as string), signal);
    let indexDigest: string | undefined;
    if (INDEX_TYPES.includes(got.mediaType)) {
      const index = imageIndexSchema.safeParse(got.json);
      if (!index.success) throw this.malformed(ref, 'index', describeZodError(index.error));
      // containerd's matcher: the best of what the platform accepts (arm/v7 takes v6, amd64 386)
      const pick = pickManifest(index.data.manifests, platform);
      if (!pick) {
        const has = [...new Set(index.data.manifests.flatMap((m) => (m.platform ? [platformId(m.platform)] : [])))];
        // a hostile index may name thousands: the message stays short enough for a gRPC trailer
        const listed = has.length > 16 ? `${has.slice(0, 16).join(', ')} and ${has.length - 16} more` : has.join(', ');
        throw new BuildError('not-found', `Cannot pull ${ref.familiar}: no match for platform ${platformId(platform)} in its index, which has ${has.length > 0 ? listed : 'no platform'}`);
      }
      indexDigest = got.digest;
      got = await this.getManifest(ref, pick.digest, signal);
      if (INDEX_TYPES.includes(got.mediaType)) throw this.malformed(ref, 'index', 'an index inside an index');
    }
    const manifest = imageManifestSchema.safeParse(got.json);
    if (!manifest.success) throw this.malformed(ref, 'manifest', describeZodError(manifest.error));
    const configDescriptor = manifest.data.config;
    if (configDescriptor.size > MAX_MANIFEST_BYTES) {
      throw new BuildError('invalid-argument', `Cannot pull ${ref.familiar}: its config is ${configDescriptor.size} bytes, over the ${MAX_MANIFEST_BYTES} byte limit`);
    }
    const res = await this.getBlob(ref, configDescriptor.digest, signal);
    const bytes = await readCapped(res, configDescriptor.size, `config of ${ref.familiar}`);
    if (bytes.length !== configDescriptor.size || sha256(bytes) !== configDescriptor.digest) {
      throw new BuildError('invalid-argument', `Cannot pull ${ref.familiar}: its config does not match ${configDescriptor.digest}`);
    }
    const config = imageConfigSchema.safeParse(parseJson(bytes, `config of ${ref.familiar}`));
    if (!config.success) throw this.malformed(ref, 'config', describeZodError(config.error));
    return {
      ref: ref.toString(),
      digest: got.digest,
      indexDigest,
      manifest: manifest.data,
      manifestBytes: got.bytes,
      mediaType: got.mediaType,
      config: config.data,
      configDescriptor,
    };
  }

  /**
   * The manifest `refIn` names exactly as served, with no platform picked from an index (a
   * cache manifest is no image): from the registry's mirrors first. not-found when absent.
   */
  async fetchManifest(refIn: ImageRef | string, signal?: AbortSignal): Promise<{ digest: string; bytes: Buffer; json: unknown; mediaType: string }> {
    const ref = asRef(refIn);
    return this.viaMirrors(ref, (from) => this.getManifest(from, from.digest ?? (from.tag as string), signal), signal);
  }

  /**
   * Streams a blob into the content store, whose ingest verifies digest and size. Nothing is
   * fetched when the store already has it.
   */
  async fetchBlob(refIn: ImageRef | string, descriptor: Descriptor, store: ContentStore, signal?: AbortSignal): Promise<BlobInfo> {
    const ref = asRef(refIn);
    const have = await store.info(descriptor.digest);
    if (have) return have;
    // a download that broke off (the store keeps nothing of it) starts again
    const info = await traced('registry.pull', { 'registry.ref': ref.familiar, 'registry.blob.digest': descriptor.digest, 'registry.blob.size': descriptor.size }, () =>
      this.viaMirrors(ref, (from) => withRetries(() => this.fetchBlobOnce(from, descriptor, store, signal), signal), signal),
    );
    this.remember(descriptor.digest, ref);
    return info;
  }

  /**
   * Runs a pull step against each mirror of `ref`'s registry in turn (the same repository, tag
   * and digest there), then against the registry itself: the first that succeeds answers. A
   * mirror that fails (has not the image, is down, refuses us) only moves on to the next;
   * cancellation stops at once. Content is verified by digest whichever answered.
   */
  private async viaMirrors<T>(ref: ImageRef, attempt: (from: ImageRef) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const key = hostKey(ref.registry);
    const mirrors = Object.entries(this.opts.registries ?? {}).find(([host]) => hostKey(host) === key)?.[1].mirrors ?? [];
    for (const mirror of mirrors) {
      signal?.throwIfAborted();
      const from = ref.withRegistry(mirror);
      try {
        return await attempt(from);
      } catch (err) {
        if (err instanceof BuildError && err.code === 'cancelled') throw err;
      }
    }
    return attempt(ref);
  }

  /** Notes where a blob came from, so a push to another repository of that registry can mount it. */
  private remember(digest: string, ref: ImageRef): void {
    // bounded: the oldest notes go first (a missed mount only costs an upload)
    if (this.origins.size >= MAX_ORIGINS) this.origins.delete(this.origins.keys().next().value as string);
    this.origins.set(digest, { registry: ref.registry, repository: ref.repository });
  }

  private async fetchBlobOnce(ref: ImageRef, descriptor: Descriptor, store: ContentStore, signal?: AbortSignal): Promise<BlobInfo> {
    const res = await this.getBlob(ref, descriptor.digest, signal);
    const declared = Number(header(res, 'content-length'));
    if (Number.isFinite(declared) && declared !== descriptor.size) {
      await discard(res);
      throw new BuildError('invalid-argument', `Cannot pull ${ref.familiar}: blob ${descriptor.digest} is ${declared} bytes, expected ${descriptor.size}`);
    }
    try {
      const info = await store.ingest(res.body, { digest: descriptor.digest, size: descriptor.size }, signal);
      this.transport.transferred('pull', descriptor.size);
      return info;
    } catch (err) {
      res.body.destroy();
      if (err instanceof BuildError && err.code === 'invalid-argument') {
        throw new BuildError('invalid-argument', `Cannot pull ${ref.familiar}: blob from ${ref.registry} rejected: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  /** Pushes blobs (skipping those the registry has) then the manifest; returns its digest. */
  async push(refIn: ImageRef | string, image: PushImage, signal?: AbortSignal): Promise<string> {
    const ref = asRef(refIn);
    const mountFrom = (digest: string): string | undefined => {
      const o = this.origins.get(digest);
      return o !== undefined && o.registry === ref.registry && o.repository !== ref.repository ? o.repository : undefined;
    };
    return traced('registry.push', { 'registry.ref': ref.familiar, 'registry.blobs': image.blobs.length }, () => pushImage(this.transport, ref, { mountFrom, ...image }, signal));
  }

  /** A tee for assembleImage that uploads to `refIn`'s repository the blobs it makes (see StreamedUploads). */
  streamedUploads(refIn: ImageRef | string, signal?: AbortSignal): StreamedUploads {
    return new StreamedUploads(this.transport, asRef(refIn), signal);
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  private malformed(ref: ImageRef, what: string, why: string | undefined): BuildError {
    return new BuildError('invalid-argument', `Cannot pull ${ref.familiar}: malformed ${what}: ${why ?? 'invalid'}`);
  }

  private async getManifest(ref: ImageRef, reference: string, signal?: AbortSignal): Promise<{ digest: string; bytes: Buffer; json: unknown; mediaType: string }> {
    const url = this.transport.url(ref.registry, `${ref.repository}/manifests/${reference}`);
    const res = await this.transport.send(ref, 'pull', pullScope(ref), url, { method: 'GET', headers: { accept: MANIFEST_ACCEPT }, signal });
    if (res.statusCode !== 200) throw await this.transport.fail(res, ref, 'pull');
    const bytes = await readCapped(res, MAX_MANIFEST_BYTES, `manifest of ${ref.familiar}`);
    const digest = sha256(bytes);
    // By digest the content must be that digest; by tag we trust our own hash over any header.
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new BuildError('invalid-argument', `Cannot pull ${ref.familiar}: ${ref.registry} served a manifest with digest ${digest} for ${reference}`);
    }
    const json = parseJson(bytes, `manifest of ${ref.familiar}`);
    const declaredType = typeof json === 'object' && json !== null && 'mediaType' in json ? (json as { mediaType: unknown }).mediaType : undefined;
    const contentType = (header(res, 'content-type') ?? '').split(';')[0].trim();
    const mediaType = typeof declaredType === 'string' ? declaredType
      : contentType && contentType !== 'application/json' ? contentType
        : json !== null && typeof json === 'object' && 'manifests' in json ? INDEX_TYPES[0] : 'application/vnd.oci.image.manifest.v1+json';
    return { digest, bytes, json, mediaType };
  }

  /** GET a blob, following redirects (to a CDN) without sending our credentials there. */
  private async getBlob(ref: ImageRef, digest: string, signal?: AbortSignal): Promise<HttpResponse> {
    const url = this.transport.url(ref.registry, `${ref.repository}/blobs/${digest}`);
    let res = await this.transport.send(ref, 'pull', pullScope(ref), url, { method: 'GET', signal });
    let at = url;
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400; hops++) {
      const location = header(res, 'location');
      await discard(res);
      if (!location || hops >= MAX_REDIRECTS) throw new BuildError('unavailable', `Cannot pull ${ref.familiar}: blob ${digest}: too many or broken redirects`);
      at = new URL(location, at);
      res = await sendRequest(this.transport.dispatcher, at, { method: 'GET', signal }, `${ref.registry} (redirected to ${at.host})`);
    }
    if (res.statusCode !== 200) throw await this.transport.fail(res, ref, 'pull', `blob ${digest}`);
    return res;
  }
}
