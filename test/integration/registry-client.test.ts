import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { BuildError } from '../../solver/build-error';
import { LocalContentStore } from '../../store/content-store';
import { StaticCredentials } from '../../store/docker-credentials';
import { Descriptor } from '../../store/manifest';
import { MediaTypes } from '../../store/oci-media-types';
import { RegistryClient } from '../../store/registry-client';
import { PushImage } from '../../store/registry-push';
import { BusyboxImage, pushBusyboxImage } from '../helpers/busybox-image';
import { CountingDispatcher, countingDispatcher } from '../helpers/counting-dispatcher';
import { TestRegistry, freePort, startRegistry } from '../helpers/registry';

const run = promisify(execFile);
jest.setTimeout(60_000);

let registry: TestRegistry;
let busybox: BusyboxImage;
let tmp: string;
let store: LocalContentStore;
let counter: CountingDispatcher;
let client: RegistryClient;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry.host);
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-registry-client-'));
  store = await LocalContentStore.open(path.join(tmp, 'content'));
  counter = countingDispatcher();
  client = new RegistryClient({ dispatcher: counter.dispatcher });
});

afterAll(async () => {
  await client?.close();
  await counter?.close();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<BuildError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(BuildError);
  return err as BuildError;
}

async function putJson(s: LocalContentStore, value: unknown, mediaType: string): Promise<Descriptor> {
  const info = await s.ingest(Readable.from([Buffer.from(JSON.stringify(value))]));
  return { mediaType, ...info };
}

/** An image of the busybox layer (fetched into `store`) with a config for `architecture`. */
async function buildImage(architecture: string, label: string): Promise<PushImage & { layer: Descriptor }> {
  const pulled = await client.resolve(busybox.ref);
  const layer = pulled.manifest.layers[0];
  await client.fetchBlob(busybox.ref, layer, store);
  const config = await putJson(store, { ...pulled.config, architecture, config: { ...pulled.config.config, Labels: { label } } }, MediaTypes.ociConfig);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config, layers: [layer] }));
  return { manifest, mediaType: MediaTypes.ociManifest, blobs: [config, layer], store, layer };
}

describe('resolve', () => {
  test('by tag returns the manifest, its digest and the config', async () => {
    const got = await client.resolve(busybox.ref);
    expect(got.ref).toBe(busybox.ref);
    expect(got.digest).toBe(busybox.digest);
    expect(got.mediaType).toBe(MediaTypes.ociManifest);
    expect(got.configDescriptor.digest).toBe(busybox.configDigest);
    expect(got.manifest.layers.map((l) => l.digest)).toEqual([busybox.layerDigest]);
    expect(got.config.config?.Cmd).toEqual(['sh']);
    expect('sha256:' + createHash('sha256').update(got.manifestBytes).digest('hex')).toBe(busybox.digest);
  });

  test('by digest returns the same manifest', async () => {
    const got = await client.resolve(`${registry.host}/busybox@${busybox.digest}`);
    expect(got.digest).toBe(busybox.digest);
    expect(got.config.architecture).toBe('amd64');
  });

  test('an unknown tag is not-found naming the ref and the status', async () => {
    const err = await rejection(client.resolve(`${registry.host}/busybox:nope`));
    expect(err.code).toBe('not-found');
    expect(err.message).toContain(`Cannot pull ${registry.host}/busybox:nope: manifest unknown (404`);
  });

  test('an index resolves to its linux/amd64 manifest', async () => {
    const amd = await buildImage('amd64', 'amd');
    const arm = await buildImage('arm64', 'arm');
    const ref = `${registry.host}/multi`;
    const amdDigest = await client.push(`${ref}@sha256:${createHash('sha256').update(amd.manifest).digest('hex')}`, amd);
    const armDigest = await client.push(`${ref}@sha256:${createHash('sha256').update(arm.manifest).digest('hex')}`, arm);
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: [
        { mediaType: MediaTypes.ociManifest, digest: armDigest, size: arm.manifest.length, platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: MediaTypes.ociManifest, digest: amdDigest, size: amd.manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }));
    const indexDigest = await client.push(`${ref}:v1`, { manifest: index, mediaType: MediaTypes.ociIndex, blobs: [], store });
    const got = await client.resolve(`${ref}:v1`);
    expect(got.indexDigest).toBe(indexDigest);
    expect(got.digest).toBe(amdDigest);
    expect(got.config.config?.Labels).toEqual({ label: 'amd' });
    const armClient = new RegistryClient({ platform: { os: 'linux', architecture: 'arm64' } });
    try {
      expect((await armClient.resolve(`${ref}:v1`)).digest).toBe(armDigest);
    } finally {
      await armClient.close();
    }
    // containerd's matcher: arm64/v8 is arm64; a platform the index lacks is named with what it has
    expect((await client.resolve(`${ref}:v1`, undefined, { os: 'linux', architecture: 'arm64', variant: 'v8' })).digest).toBe(armDigest);
    const missing = await rejection(client.resolve(`${ref}:v1`, undefined, { os: 'linux', architecture: 's390x' }));
    expect(missing.code).toBe('not-found');
    expect(missing.message).toBe(`Cannot pull ${ref}:v1: no match for platform linux/s390x in its index, which has linux/arm64, linux/amd64`);
    // a single image is taken whatever its platform, as containerd does (the frontend warns)
    await expect(client.resolve(busybox.ref, undefined, { os: 'linux', architecture: 'arm64' })).resolves.toMatchObject({ digest: busybox.digest });
  });

  test('an arm/v7 platform takes an index\'s arm/v6 image when it has no v7, and amd64 takes 386 last', async () => {
    const v6 = await buildImage('arm', 'v6');
    const i386 = await buildImage('386', 'i386');
    const ref = `${registry.host}/fallbacks`;
    const v6Digest = await client.push(`${ref}@sha256:${createHash('sha256').update(v6.manifest).digest('hex')}`, v6);
    const i386Digest = await client.push(`${ref}@sha256:${createHash('sha256').update(i386.manifest).digest('hex')}`, i386);
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: [
        { mediaType: MediaTypes.ociManifest, digest: i386Digest, size: i386.manifest.length, platform: { os: 'linux', architecture: '386' } },
        { mediaType: MediaTypes.ociManifest, digest: v6Digest, size: v6.manifest.length, platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      ],
    }));
    await client.push(`${ref}:v1`, { manifest: index, mediaType: MediaTypes.ociIndex, blobs: [], store });
    expect((await client.resolve(`${ref}:v1`, undefined, { os: 'linux', architecture: 'arm', variant: 'v7' })).digest).toBe(v6Digest);
    expect((await client.resolve(`${ref}:v1`, undefined, { os: 'linux', architecture: 'amd64' })).digest).toBe(i386Digest);
    const v5 = await rejection(client.resolve(`${ref}:v1`, undefined, { os: 'linux', architecture: 'arm', variant: 'v5' }));
    expect(v5.message).toMatch(/no match for platform linux\/arm\/v5 in its index, which has linux\/386, linux\/arm\/v6/);
  });

  test('a Docker schema 2 manifest (written by skopeo) resolves, and its layer fetches verified', async () => {
    const ref = `${registry.host}/busybox-v2s2:latest`;
    await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', '--format', 'v2s2', `docker://${busybox.ref}`, `docker://${ref}`]);
    const got = await client.resolve(ref);
    expect(got.mediaType).toBe(MediaTypes.dockerManifest);
    expect(got.manifest.layers[0].mediaType).toBe(MediaTypes.dockerLayerGzip);
    expect(got.config.config?.Cmd).toEqual(['sh']);
    await expect(client.fetchBlob(ref, got.manifest.layers[0], store)).resolves.toMatchObject({ digest: got.manifest.layers[0].digest });
  });

  test('a Docker manifest list resolves to its linux/amd64 manifest', async () => {
    const amd = await client.resolve(`${registry.host}/busybox-v2s2:latest`);
    const arm = await buildImage('arm64', 'arm');
    const ref = `${registry.host}/busybox-v2s2`;
    const armDigest = await client.push(`${ref}@sha256:${createHash('sha256').update(arm.manifest).digest('hex')}`, arm);
    const list = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.dockerManifestList,
      manifests: [
        { mediaType: MediaTypes.ociManifest, digest: armDigest, size: arm.manifest.length, platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: amd.mediaType, digest: amd.digest, size: amd.manifestBytes.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }));
    const listDigest = await client.push(`${ref}:list`, { manifest: list, mediaType: MediaTypes.dockerManifestList, blobs: [], store });
    const got = await client.resolve(`${ref}:list`);
    expect(got.indexDigest).toBe(listDigest);
    expect(got.digest).toBe(amd.digest);
    expect(got.mediaType).toBe(MediaTypes.dockerManifest);
  });

  test('an unreachable registry is unavailable naming it', async () => {
    const host = `127.0.0.1:${await freePort()}`;
    const err = await rejection(client.resolve(`${host}/x:1`));
    expect(err.code).toBe('unavailable');
    expect(err.message).toContain(`Cannot reach registry ${host}`);
  });
});

describe('fetchBlob', () => {
  test('streams a layer into the content store, then skips it', async () => {
    const fresh = await LocalContentStore.open(path.join(tmp, 'fetch'));
    const { manifest } = await client.resolve(busybox.ref);
    const layer = manifest.layers[0];
    const before = counter.count('GET', `/blobs/${layer.digest}`);
    expect(await client.fetchBlob(busybox.ref, layer, fresh)).toEqual({ digest: layer.digest, size: layer.size });
    expect(await fresh.info(layer.digest)).toEqual({ digest: layer.digest, size: layer.size });
    await client.fetchBlob(busybox.ref, layer, fresh);
    expect(counter.count('GET', `/blobs/${layer.digest}`)).toBe(before + 1);
  });

  test('rejects a blob that does not match its descriptor, storing nothing', async () => {
    const fresh = await LocalContentStore.open(path.join(tmp, 'mismatch'));
    const { manifest, configDescriptor } = await client.resolve(busybox.ref);
    const wrongSize = { ...manifest.layers[0], size: manifest.layers[0].size - 1 };
    expect((await rejection(client.fetchBlob(busybox.ref, wrongSize, fresh))).code).toBe('invalid-argument');
    expect(await fresh.info(wrongSize.digest)).toBeUndefined();
    // The registry serves the config's bytes under its digest; we expected the layer's digest.
    const dir = (await fsp.readdir(path.join(tmp, 'mismatch', 'blobs', 'sha256'))).length;
    const lying = { ...configDescriptor, digest: manifest.layers[0].digest };
    const err = await rejection(client.fetchBlob(busybox.ref, lying, fresh));
    expect(err.message).toMatch(/Cannot pull .*busybox:latest/);
    expect((await fsp.readdir(path.join(tmp, 'mismatch', 'blobs', 'sha256'))).length).toBe(dir);
  });

  test('rejects a blob the registry serves corrupted (same size, other digest)', async () => {
    const bytes = Buffer.from(JSON.stringify({ corrupt: 'me', pad: 'x'.repeat(100) }));
    const info = await store.ingest(Readable.from([bytes]));
    const blob: Descriptor = { mediaType: 'application/octet-stream', ...info };
    const image = await buildImage('amd64', 'corrupt');
    await client.push(`${registry.host}/corrupt:1`, { ...image, blobs: [...image.blobs, blob] });
    const hex = info.digest.slice('sha256:'.length);
    const onDisk = path.join(registry.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const flipped = Buffer.from(bytes);
    flipped[10] ^= 0x20;
    await fsp.writeFile(onDisk, flipped);
    const fresh = await LocalContentStore.open(path.join(tmp, 'corrupt'));
    const err = await rejection(client.fetchBlob(`${registry.host}/corrupt:1`, blob, fresh));
    expect(err.code).toBe('invalid-argument');
    expect(err.message).toContain(`expected ${info.digest}`);
    expect(await fresh.info(info.digest)).toBeUndefined();
  });
});

describe('push', () => {
  test('uploads missing blobs, HEAD-skips present ones, and skopeo sees the image', async () => {
    const image = await buildImage('amd64', 'pushed');
    const ref = `${registry.host}/pushed:1`;
    const posts = counter.count('POST');
    const digest = await client.push(ref, image);
    // Blobs are per repository: this new repository gets both the config and the layer.
    expect(counter.count('POST') - posts).toBe(2);
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`]);
    const inspected = JSON.parse(stdout) as { Digest: string; Labels: Record<string, string>; Layers: string[] };
    expect(inspected.Digest).toBe(digest);
    expect(inspected.Labels).toEqual({ label: 'pushed' });
    expect(inspected.Layers).toEqual([image.layer.digest]);

    const heads = counter.count('HEAD');
    const posts2 = counter.count('POST');
    const puts = counter.count('PUT');
    expect(await client.push(ref, image)).toBe(digest);
    expect(counter.count('HEAD') - heads).toBe(2);
    expect(counter.count('POST') - posts2).toBe(0);
    expect(counter.count('PUT') - puts).toBe(1);
  });

  test('uploads several blobs at once, and the manifest only after every blob', async () => {
    const image = await buildImage('amd64', 'parallel');
    const extra: Descriptor[] = [];
    for (let i = 0; i < 3; i++) {
      const info = await store.ingest(Readable.from([randomBytes(256 * 1024)]));
      extra.push({ mediaType: MediaTypes.ociLayer, ...info });
    }
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: image.blobs[0], layers: [image.layer, ...extra] }));
    const from = counter.requests.length;
    await client.push(`${registry.host}/parallel:1`, { ...image, manifest, blobs: [image.blobs[0], image.layer, ...extra] });
    const log = counter.requests.slice(from);
    const heads = log.flatMap((r, i) => (r.startsWith('HEAD ') && r.includes('/blobs/') ? [i] : []));
    const blobPuts = log.flatMap((r, i) => (r.startsWith('PUT ') && !r.includes('/manifests/') ? [i] : []));
    const manifestPut = log.findIndex((r) => r.startsWith('PUT ') && r.includes('/manifests/'));
    expect(heads).toHaveLength(5);
    // the busybox layer was pulled from the busybox repository: mounted from there, not sent
    expect(log.filter((r) => r.startsWith('POST ') && r.includes(`mount=${encodeURIComponent(image.layer.digest)}`))).toHaveLength(1);
    expect(blobPuts).toHaveLength(4);
    // every blob was asked for before the first upload finished its round trips: they overlap
    expect(Math.max(...heads)).toBeLessThan(Math.min(...blobPuts));
    expect(manifestPut).toBeGreaterThan(Math.max(...blobPuts));
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${registry.host}/parallel:1`]);
    expect((JSON.parse(stdout) as { layers: unknown[] }).layers).toHaveLength(4);
  });

  test('refuses a blob missing from the content store', async () => {
    const image = await buildImage('amd64', 'missing');
    const absent = { digest: 'sha256:' + 'a'.repeat(64), size: 3 };
    const err = await rejection(client.push(`${registry.host}/pushed:2`, { ...image, blobs: [absent] }));
    expect(err.code).toBe('not-found');
    // among uploads in flight, the missing blob's failure is the one the caller sees, and no manifest goes
    const puts = counter.count('PUT', '/manifests/');
    const among = await rejection(client.push(`${registry.host}/pushed:3`, { ...image, blobs: [...image.blobs, absent] }));
    expect(among.code).toBe('not-found');
    expect(among.message).toContain(absent.digest);
    expect(counter.count('PUT', '/manifests/')).toBe(puts);
  });
});

describe('auth', () => {
  test('bearer: token flow with credentials, cached per scope; refused without', async () => {
    const secured = await startRegistry({ token: { user: 'alice', pass: 's3cret' } });
    const creds = new StaticCredentials(new Map([[secured.host, { username: 'alice', password: 's3cret' }]]));
    const authed = new RegistryClient({ credentials: creds });
    const anonymous = new RegistryClient();
    const wrong = new RegistryClient({ credentials: new StaticCredentials(new Map([[secured.host, { username: 'alice', password: 'nope' }]])) });
    try {
      const image = await buildImage('amd64', 'secret');
      const ref = `${secured.host}/private:1`;
      const digest = await authed.push(ref, image);
      expect((await authed.resolve(ref)).digest).toBe(digest);
      const requests = secured.tokenServer?.requests ?? [];
      expect(requests.every((r) => r.authenticated)).toBe(true);
      // One token for push scope, one for pull scope: every other request reused them.
      expect(requests.map((r) => r.scopes[0])).toEqual(['repository:private:pull,push', 'repository:private:pull']);

      const denied = await rejection(anonymous.resolve(ref));
      expect(denied.code).toBe('unauthenticated');
      expect(denied.message).toContain(`Cannot pull ${ref}: unauthorized (401): no credentials for ${secured.host}`);
      const refused = await rejection(wrong.resolve(ref));
      expect(refused.code).toBe('unauthenticated');
      expect(refused.message).toContain(`the credentials for ${secured.host} were refused`);
    } finally {
      await Promise.all([authed.close(), anonymous.close(), wrong.close()]);
      await secured.stop();
    }
  });

  test('basic: htpasswd registry with credentials; refused without', async () => {
    const secured = await startRegistry({ htpasswd: { user: 'bob', pass: 'pw' } });
    const authed = new RegistryClient({ credentials: new StaticCredentials(new Map([[secured.host, { username: 'bob', password: 'pw' }]])) });
    const anonymous = new RegistryClient();
    try {
      const image = await buildImage('amd64', 'basic');
      const ref = `${secured.host}/basic:1`;
      const digest = await authed.push(ref, image);
      expect((await authed.resolve(ref)).digest).toBe(digest);
      const err = await rejection(anonymous.resolve(ref));
      expect(err.code).toBe('unauthenticated');
      expect(err.message).toContain('no credentials');
    } finally {
      await Promise.all([authed.close(), anonymous.close()]);
      await secured.stop();
    }
  });
});
