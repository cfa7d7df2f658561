import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { LocalContentStore } from '../../store/content-store';
import { parseImageRef } from '../../store/image-ref';
import { RegistryClient } from '../../store/registry-client';
import { startFaultProxy } from '../helpers/fault-proxy';
import { startRegistry, type TestRegistry } from '../helpers/registry';

jest.setTimeout(60_000);

/**
 * A registry behind a proxy that drops the connection in the middle of a blob, once: the push
 * sends the blob again and the image that lands is complete; a pull that breaks off mid-blob
 * downloads it again and stores exactly the blob.
 */
let registry: TestRegistry;
let tmp: string;

beforeAll(async () => {
  registry = await startRegistry();
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-retries-'));
});

afterAll(async () => {
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function imageIn(store: LocalContentStore, layer: Buffer): Promise<{ manifest: Buffer; blobs: Array<{ digest: string; size: number }> }> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  const c = await store.ingest(Readable.from([config]));
  const l = await store.ingest(Readable.from([layer]));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...c },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
  }));
  return { manifest, blobs: [c, l] };
}

/** Pushes `image` (from `store`) as `ref` straight to a registry, with a client of its own: the state a test starts from. */
async function seed(ref: string, image: { manifest: Buffer; blobs: Array<{ digest: string; size: number }> }, store: LocalContentStore): Promise<void> {
  const client = new RegistryClient();
  try {
    await client.push(parseImageRef(ref), { manifest: image.manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', blobs: image.blobs, store });
  } finally {
    await client.close();
  }
}

test('a push whose blob upload is cut off halfway sends it again; the image that lands is complete', async () => {
  let cut = false;
  const proxy = await startFaultProxy(registry.host, (method, p) => {
    if (!cut && method === 'PUT' && p.includes('/blobs/uploads/')) {
      cut = true;
      return { kind: 'drop-request', afterBytes: 256 * 1024 };
    }
    return { kind: 'pass' };
  });
  const client = new RegistryClient();
  try {
    const store = await LocalContentStore.open(path.join(tmp, 'push-store'));
    const layer = randomBytes(2 * 1024 * 1024);
    const image = await imageIn(store, layer);
    const ref = parseImageRef(`${proxy.host}/flaky/app:1`);
    const digest = await client.push(ref, { manifest: image.manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', blobs: image.blobs, store });
    expect(cut).toBe(true);
    expect(proxy.seen.filter((r) => r.startsWith('PUT /v2/flaky/app/blobs/uploads/')).length).toBe(3); // cut, again, config
    // straight from the registry, not through the proxy: everything is there and whole
    const manifest = await fetch(`http://${registry.host}/v2/flaky/app/manifests/1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    expect(manifest.headers.get('docker-content-digest')).toBe(digest);
    const blob = Buffer.from(await (await fetch(`http://${registry.host}/v2/flaky/app/blobs/${sha(layer)}`)).arrayBuffer());
    expect(blob.equals(layer)).toBe(true);
  } finally {
    await client.close();
    await proxy.close();
  }
});

test('a pull whose blob download is cut off halfway fetches it again and stores exactly the blob', async () => {
  const upstreamStore = await LocalContentStore.open(path.join(tmp, 'origin'));
  const layer = randomBytes(1024 * 1024);
  const image = await imageIn(upstreamStore, layer);
  await seed(`${registry.host}/pull/app:1`, image, upstreamStore);
  let cut = false;
  const proxy = await startFaultProxy(registry.host, (method, p) => {
    if (!cut && method === 'GET' && p.endsWith(`/blobs/${sha(layer)}`)) {
      cut = true;
      return { kind: 'drop-response', afterBytes: 300 * 1024 };
    }
    return { kind: 'pass' };
  });
  const client = new RegistryClient();
  try {
    const store = await LocalContentStore.open(path.join(tmp, 'pull-store'));
    const info = await client.fetchBlob(parseImageRef(`${proxy.host}/pull/app:1`), { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }, store);
    expect(cut).toBe(true);
    expect(proxy.seen.filter((r) => r === `GET /v2/pull/app/blobs/${sha(layer)}`)).toHaveLength(2);
    expect(info).toEqual({ digest: sha(layer), size: layer.length });
    expect((await fsp.readFile(store.blobPath(sha(layer)))).equals(layer)).toBe(true);
  } finally {
    await client.close();
    await proxy.close();
  }
});

test('a blob pulled from one repository is mounted into another of the same registry, not uploaded again', async () => {
  const origin = await LocalContentStore.open(path.join(tmp, 'mount-origin'));
  const layer = randomBytes(512 * 1024);
  const image = await imageIn(origin, layer);
  await seed(`${registry.host}/mount/base:1`, image, origin);
  const proxy = await startFaultProxy(registry.host, () => ({ kind: 'pass' }));
  const client = new RegistryClient();
  try {
    const store = await LocalContentStore.open(path.join(tmp, 'mount-store'));
    // pulled from mount/base (as a build's base layer is)...
    await client.fetchBlob(parseImageRef(`${proxy.host}/mount/base:1`), { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }, store);
    const own = await imageIn(store, layer);
    // ...and pushed to mount/app: the layer is mounted, only the new config is uploaded
    await client.push(parseImageRef(`${proxy.host}/mount/app:1`), { manifest: own.manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', blobs: own.blobs, store });
    expect(proxy.seenWithQuery).toContain(`POST /v2/mount/app/blobs/uploads/?mount=${encodeURIComponent(sha(layer))}&from=mount%2Fbase`);
    expect(proxy.seen.filter((r) => r.startsWith('PUT /v2/mount/app/blobs/uploads/'))).toHaveLength(1);
    const blob = Buffer.from(await (await fetch(`http://${registry.host}/v2/mount/app/blobs/${sha(layer)}`)).arrayBuffer());
    expect(blob.equals(layer)).toBe(true);
  } finally {
    await client.close();
    await proxy.close();
  }
});

test('mirrors: a pull asks the mirror first, and the registry itself when the mirror has not the image', async () => {
  const mirror = await startRegistry();
  try {
    const store = await LocalContentStore.open(path.join(tmp, 'mirror-seed'));
    const onMirror = await imageIn(store, randomBytes(64 * 1024));
    const onOrigin = await imageIn(store, randomBytes(64 * 1024));
    // the mirror holds mirrored/app:1 (under the same repository path), the origin holds only mirrored/app:2
    await seed(`${mirror.host}/mirrored/app:1`, onMirror, store);
    await seed(`${registry.host}/mirrored/app:2`, onOrigin, store);
    const client = new RegistryClient({ registries: { [registry.host]: { mirrors: [mirror.host] } } });
    try {
      const pulled = await client.resolve(`${registry.host}/mirrored/app:1`);
      expect(pulled.ref).toBe(`${registry.host}/mirrored/app:1`);
      expect(pulled.digest).toBe(sha(onMirror.manifest));
      const into = await LocalContentStore.open(path.join(tmp, 'mirror-pull'));
      const layer = pulled.manifest.layers[0] as { digest: string; size: number; mediaType: string };
      expect(await client.fetchBlob(`${registry.host}/mirrored/app:1`, layer, into)).toEqual({ digest: layer.digest, size: layer.size });
      // not on the mirror: the registry itself answers
      expect((await client.resolve(`${registry.host}/mirrored/app:2`)).digest).toBe(sha(onOrigin.manifest));
      // on neither: the registry's own answer is the error
      await expect(client.resolve(`${registry.host}/mirrored/app:3`)).rejects.toThrow(registry.host);
    } finally {
      await client.close();
    }
  } finally {
    await mirror.stop();
  }
});
