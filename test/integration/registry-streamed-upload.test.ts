import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { LocalContentStore, type BlobInfo } from '../../store/content-store';
import { parseImageRef, type ImageRef } from '../../store/image-ref';
import { DEFAULT_COMPRESSION } from '../../store/layer-compression';
import { diffToLayer, type LayerDescriptor } from '../../store/layer-diff';
import { RegistryClient } from '../../store/registry-client';
import { CountingDispatcher, countingDispatcher } from '../helpers/counting-dispatcher';
import { startFaultProxy } from '../helpers/fault-proxy';
import { TestRegistry, startRegistry } from '../helpers/registry';

jest.setTimeout(60_000);

/**
 * A push that uploads each new layer while it is compressed (StreamedUploads as the tee of
 * diffToLayer), against the real registry, and what happens when a registry will not take the
 * stream: the layer is still made whole and the ordinary push sends it.
 */
let registry: TestRegistry;
let tmp: string;
let tree: string;

beforeAll(async () => {
  registry = await startRegistry();
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-streamed-upload-'));
  // a layer larger than every buffer on the way (random: gzip keeps it as large)
  tree = path.join(tmp, 'layer', 'upper');
  await fsp.mkdir(path.join(tree, 'data'), { recursive: true });
  await fsp.writeFile(path.join(tree, 'data', 'big'), randomBytes(12 * 1024 * 1024));
  for (let i = 0; i < 50; i++) await fsp.writeFile(path.join(tree, 'data', `f${i}`), `file ${i}\n`);
});

afterAll(async () => {
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

const snapshot = { upperDir: async (): Promise<string> => tree };

async function registryBlob(host: string, repo: string, digest: string): Promise<Buffer | undefined> {
  const res = await fetch(`http://${host}/v2/${repo}/blobs/${digest}`);
  if (res.status === 404) return undefined;
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function withClient<T>(fn: (client: RegistryClient, counter: CountingDispatcher, store: LocalContentStore) => Promise<T>): Promise<T> {
  const counter = countingDispatcher();
  const client = new RegistryClient({ dispatcher: counter.dispatcher });
  const store = await LocalContentStore.open(await fsp.mkdtemp(path.join(tmp, 'content-')));
  try {
    return await fn(client, counter, store);
  } finally {
    await client.close();
    await counter.close();
  }
}

/** Pushes an image of `layer` with a config of its own, telling the push what was streamed; returns the config. */
async function pushImageOf(client: RegistryClient, ref: ImageRef, store: LocalContentStore, layer: LayerDescriptor, uploaded: ReadonlySet<string>): Promise<BlobInfo> {
  const config = await store.ingest(Readable.from([Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.diffId] } }))]));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
  }));
  await client.push(ref, { manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', blobs: [config, layer], store, uploaded });
  return config;
}

test('a new layer reaches the registry while it is compressed: one PATCH, committed as the stored blob', async () => {
  await withClient(async (client, counter, store) => {
    const ref = parseImageRef(`${registry.host}/streamed/ok:latest`);
    const streamed = client.streamedUploads(ref);
    const layer = await diffToLayer(snapshot, 'x', store, undefined, DEFAULT_COMPRESSION, streamed);
    expect([...streamed.uploaded]).toEqual([layer.digest]);
    expect(counter.count('PATCH', '/v2/streamed/ok/blobs/uploads/')).toBe(1);
    expect(counter.count('PUT', '/v2/streamed/ok/blobs/uploads/')).toBe(1);
    // the registry holds exactly what the content store holds, under that digest
    const stored = await fsp.readFile(store.blobPath(layer.digest));
    expect(stored.length).toBe(layer.size);
    const sent = await registryBlob(registry.host, 'streamed/ok', layer.digest);
    expect(sent?.equals(stored)).toBe(true);
    expect('sha256:' + createHash('sha256').update(stored).digest('hex')).toBe(layer.digest);
    // the push that follows checks nothing it was told is there, and finds it all
    const config = await pushImageOf(client, ref, store, layer, streamed.uploaded);
    expect(counter.count('HEAD', `/blobs/${layer.digest}`)).toBe(0);
    expect(counter.count('HEAD', `/blobs/${config.digest}`)).toBe(1);
  });
});

test.each(['refuse', 'drop'] as const)('a registry that will not take the stream (%s): the layer is made whole and the ordinary push sends it', async (mode) => {
  // the registry behind a proxy that misbehaves on PATCH: answers 405 before reading the body
  // (refuse), or takes 1 MiB of it and drops the connection (drop); everything else passes
  const proxy = await startFaultProxy(registry.host, (method) =>
    method !== 'PATCH' ? { kind: 'pass' } : mode === 'refuse' ? { kind: 'refuse', status: 405 } : { kind: 'drop-request', afterBytes: 1024 * 1024 });
  try {
    await withClient(async (client, counter, store) => {
      const ref = parseImageRef(`${proxy.host}/streamed/${mode}:latest`);
      const streamed = client.streamedUploads(ref);
      const layer = await diffToLayer(snapshot, 'x', store, undefined, DEFAULT_COMPRESSION, streamed);
      expect(streamed.uploaded.size).toBe(0);
      expect(counter.count('PATCH')).toBe(1);
      // the layer is what the same tree gives without a tee
      const plain = await withClient((_c, _n, other) => diffToLayer(snapshot, 'x', other));
      expect(layer).toEqual(plain);
      expect(await registryBlob(registry.host, `streamed/${mode}`, layer.digest)).toBeUndefined();
      // the abandoned upload session was ended, not left to the registry's timeout
      expect(counter.count('DELETE', '/blobs/uploads/')).toBe(1);
      await pushImageOf(client, ref, store, layer, streamed.uploaded);
      const sent = await registryBlob(registry.host, `streamed/${mode}`, layer.digest);
      expect(sent?.equals(await fsp.readFile(store.blobPath(layer.digest)))).toBe(true);
    });
  } finally {
    await proxy.close();
  }
});
