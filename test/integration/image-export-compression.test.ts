import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { BuildSession, ExportSpec } from '../../buildd/builder';
import { ImageExportDeps, exportImage } from '../../buildd/image-export';
import { ImagePuller } from '../../buildd/worker/image-puller';
import { CacheStore } from '../../solver/cache-store';
import { LocalContentStore } from '../../store/content-store';
import type { ImageConfig } from '../../store/image-config';
import { ImageStore } from '../../store/image-store';
import { layerCompression } from '../../store/layer-compression';
import * as layerDiff from '../../store/layer-diff';
import { premeasureLayer } from '../../store/layer-blob';
import { LayerIndex } from '../../store/layer-index';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { RegistryClient } from '../../store/registry-client';
import { SessionRegistries } from '../../buildd/session/session-registries';
import { TestRegistry, startRegistry } from '../helpers/registry';
import { cleanupRoot } from '../helpers/store-mounts';

const run = promisify(execFile);
jest.setTimeout(120_000);

let tmp: string;
let root: string;
let registry: TestRegistry;
let client: RegistryClient;
let deps: ImageExportDeps;
let snapshotter: OverlaySnapshotter;
let content: LocalContentStore;
let layers: LayerIndex;
/** top of a three-layer chain built here */
let top: string;

const image: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Cmd: ['sh'] } };

/** A committed snapshot on `parent` with `files` (path → content) written into it. */
async function commitLayer(parent: string | undefined, files: Record<string, string | Buffer>): Promise<string> {
  const active = await snapshotter.prepare(parent);
  try {
    const merged = await active.mount();
    for (const [rel, body] of Object.entries(files)) {
      await fsp.mkdir(path.dirname(path.join(merged, rel)), { recursive: true });
      await fsp.writeFile(path.join(merged, rel), body);
    }
    return await snapshotter.commit(active);
  } finally {
    await active.release();
  }
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-export-compression-'));
  root = path.join(tmp, 'root');
  registry = await startRegistry();
  client = new RegistryClient();
  snapshotter = await OverlaySnapshotter.open(root);
  content = await LocalContentStore.open(path.join(root, 'content'));
  layers = await LayerIndex.open(root);
  deps = { content, snapshotter, layers, images: await ImageStore.open(root), registry: client };
  // Text compresses, random bytes do not: levels give different blobs for the first.
  const text = Array.from({ length: 20_000 }, (_, i) => `line ${i} of a compressible file\n`).join('');
  const a = await commitLayer(undefined, { 'etc/a.txt': text, 'bin/tool': randomBytes(100_000) });
  const b = await commitLayer(a, { 'srv/b.txt': text.toUpperCase(), 'srv/dir/c': 'c\n' });
  top = await commitLayer(b, { 'app/main.txt': text + text });
});

afterAll(async () => {
  await client?.close();
  await registry?.stop();
  if (tmp) await cleanupRoot(tmp);
});

function session(): BuildSession {
  return {
    progress: () => undefined,
    exportStream: () => {
      throw new Error('an image export streams nothing to the client');
    },
    signal: new AbortController().signal,
  };
}

/** Exports `result` as type=image with `attrs`, pushed to the test registry as `repo:tag`. */
async function push(repo: string, attrs: Record<string, string>, result: string = top, base: ImageConfig = image): Promise<{ name: string; digest: string }> {
  const name = `${registry.host}/${repo}`;
  const spec: ExportSpec = { type: 'image', attrs: { name, push: 'true', ...attrs } };
  const response = await exportImage(deps, spec, [{ result, image: base, baseHistory: 0 }], session());
  return { name, digest: response['containerimage.digest'] as string };
}

interface Manifest { layers: { mediaType: string; digest: string; size: number }[]; config: { digest: string } }

/**
 * What the registry serves, checked by skopeo: the manifest, and a copy into an OCI directory
 * (skopeo verifies each blob's digest on the way) whose layers decompress, by their media
 * type, to the tars the config's diff_ids name.
 */
async function fetchChecked(name: string): Promise<{ manifest: Manifest; diffIds: string[] }> {
  const manifest = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout) as Manifest;
  const dir = await fsp.mkdtemp(path.join(tmp, 'copy-'));
  // As they are: skopeo would otherwise gzip uncompressed layers on the way.
  await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--dest-oci-accept-uncompressed-layers', `docker://${name}`, `oci:${dir}:x`]);
  const blob = (digest: string): string => path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const config = JSON.parse(await fsp.readFile(blob(manifest.config.digest), 'utf8')) as ImageConfig;
  const diffIds = config.rootfs.diff_ids;
  expect(manifest.layers).toHaveLength(diffIds.length);
  for (const [i, layer] of manifest.layers.entries()) {
    const tool = { 'application/vnd.oci.image.layer.v1.tar+gzip': ['gzip', '-dc'], 'application/vnd.oci.image.layer.v1.tar+zstd': ['zstd', '-dc'], 'application/vnd.oci.image.layer.v1.tar': ['cat'] }[layer.mediaType];
    expect(tool).toBeDefined();
    const [cmd, ...args] = tool as string[];
    const { stdout } = await run('bash', ['-o', 'pipefail', '-c', `${cmd} ${args.join(' ')} < "$1" | sha256sum`, 'bash', blob(layer.digest)]);
    expect('sha256:' + stdout.split(' ')[0]).toBe(diffIds[i]);
  }
  await fsp.rm(dir, { recursive: true, force: true });
  return { manifest, diffIds };
}

/** The layer digests of the default export of `top`, for later comparisons. */
let gzipDefaultLayers: string[];

describe('compression of exported layers', () => {
  let gzipDefault: { manifest: Manifest; diffIds: string[]; digest: string };

  beforeAll(async () => {
    const pushed = await push('app:default', {});
    gzipDefault = { ...(await fetchChecked(pushed.name)), digest: pushed.digest };
    gzipDefaultLayers = gzipDefault.manifest.layers.map((l) => l.digest);
  });

  test('by default layers are gzip at zlib\'s default level: as large as zlib makes them, random stretches stored', async () => {
    expect(gzipDefault.manifest.layers.map((l) => l.mediaType)).toEqual(Array(3).fill('application/vnd.oci.image.layer.v1.tar+gzip'));
    // Each blob is the layer's tar, within 0.1% of what zlib's default gzip makes of it; a tar
    // with no block of random bytes gets exactly zlib's bytes (createAdaptiveGzip).
    let exact = 0;
    for (const [i, layer] of gzipDefault.manifest.layers.entries()) {
      const tar = (await run('gzip', ['-dc', content.blobPath(layer.digest)], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout;
      expect('sha256:' + createHash('sha256').update(tar).digest('hex')).toBe(gzipDefault.diffIds[i]);
      const zlib = gzipSync(tar);
      expect(layer.size).toBeLessThanOrEqual(zlib.length * 1.001);
      if ('sha256:' + createHash('sha256').update(zlib).digest('hex') === layer.digest) exact++;
    }
    // the two layers of text only are zlib's bytes exactly
    expect(exact).toBeGreaterThanOrEqual(2);
    // compression=gzip and an explicit level 6 name the same image.
    expect((await push('app:gzip', { compression: 'gzip' })).digest).toBe(gzipDefault.digest);
    expect((await push('app:gzip6', { compression: 'gzip', 'compression-level': '6' })).digest).toBe(gzipDefault.digest);
  });

  test('compression=zstd: zstd layers with the OCI zstd media type, the same diff_ids', async () => {
    const pushed = await push('app:zstd', { compression: 'zstd' });
    const got = await fetchChecked(pushed.name);
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(Array(3).fill('application/vnd.oci.image.layer.v1.tar+zstd'));
    expect(got.diffIds).toEqual(gzipDefault.diffIds);
    for (const layer of got.manifest.layers) {
      const magic = (await fsp.readFile(content.blobPath(layer.digest))).subarray(0, 4);
      expect(magic.toString('hex')).toBe('28b52ffd');
    }
    // Exported again: the same blobs from the layer index, under the snapshot and the compression.
    expect((await push('app:zstd-again', { compression: 'zstd' })).digest).toBe(pushed.digest);
    const topRecord = await layers.getVariant(top, layerCompression('zstd'));
    expect(topRecord?.digest).toBe(got.manifest.layers[2]?.digest);
    // ...and the gzip blobs are still the snapshot's primary ones.
    expect((await layers.get(top))?.digest).toBe(gzipDefault.manifest.layers[2]?.digest);
    expect((await push('app:default-again', {})).digest).toBe(gzipDefault.digest);
  });

  test('compression=uncompressed: plain tar layers whose digest is their diff ID', async () => {
    const got = await fetchChecked((await push('app:tar', { compression: 'uncompressed' })).name);
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(Array(3).fill('application/vnd.oci.image.layer.v1.tar'));
    expect(got.manifest.layers.map((l) => l.digest)).toEqual(gzipDefault.diffIds);
  });

  test('compression-level changes the bytes, never the content', async () => {
    const fast = await fetchChecked((await push('app:gzip1', { compression: 'gzip', 'compression-level': '1' })).name);
    const best = await fetchChecked((await push('app:gzip9', { compression: 'gzip', 'compression-level': '9' })).name);
    const zstd19 = await fetchChecked((await push('app:zstd19', { compression: 'zstd', 'compression-level': '19' })).name);
    const zstd3 = await layers.getVariant(top, layerCompression('zstd', 3));
    for (const got of [fast, best, zstd19]) expect(got.diffIds).toEqual(gzipDefault.diffIds);
    // The text layer (the top one) compresses differently at each level.
    const sizes = [fast, gzipDefault, best].map((g) => g.manifest.layers[2]?.size as number);
    expect(sizes[0]).toBeGreaterThan(sizes[1] as number);
    expect(sizes[1]).toBeGreaterThan(sizes[2] as number);
    expect(zstd19.manifest.layers[2]?.digest).not.toBe(zstd3?.digest);
  });

  test('a compressor that fails fails the export, clearly, and stores no blob', async () => {
    const fake = path.join(tmp, 'fake-bin');
    await fsp.mkdir(fake, { recursive: true });
    // Some output, then a crash: what a truncated blob would be made of.
    await fsp.writeFile(path.join(fake, 'zstd'), '#!/bin/sh\nhead -c 100 /dev/zero\necho "zstd: out of memory" >&2\nexit 1\n', { mode: 0o755 });
    const fresh = await commitLayer(top, { 'new.txt': 'not exported yet\n' });
    const blobsBefore = await fsp.readdir(path.join(root, 'content', 'blobs', 'sha256'));
    const savedPath = process.env.PATH;
    try {
      process.env.PATH = `${fake}:${savedPath ?? ''}`;
      await expect(push('app:crash', { compression: 'zstd', 'compression-level': '5' }, fresh)).rejects.toThrow('Cannot compress a layer with zstd: zstd exited with code 1: zstd: out of memory');
      process.env.PATH = path.join(tmp, 'empty-bin');
      await expect(push('app:missing', { compression: 'zstd', 'compression-level': '5' }, fresh)).rejects.toThrow('Cannot compress a layer with zstd: zstd is not installed (install the Debian package zstd)');
    } finally {
      process.env.PATH = savedPath;
    }
    expect(await fsp.readdir(path.join(root, 'content', 'ingest'))).toEqual([]);
    expect(await fsp.readdir(path.join(root, 'content', 'blobs', 'sha256'))).toEqual(blobsBefore);
    expect(await layers.get(fresh)).toBeUndefined();
    // With zstd back, the same export works.
    await fetchChecked((await push('app:recovered', { compression: 'zstd', 'compression-level': '5' }, fresh)).name);
  });
});

describe('force-compression on a pulled base image', () => {
  let baseTop: string;
  let base: { manifest: Manifest; diffIds: string[] };
  let baseConfig: ImageConfig;

  beforeAll(async () => {
    // A base image with uncompressed layers, pulled as a build's FROM would pull it.
    const pushed = await push('base:tar', { compression: 'uncompressed' });
    base = await fetchChecked(pushed.name);
    const puller = new ImagePuller({ registries: new SessionRegistries(client), content, snapshotter, cache: await CacheStore.open(path.join(tmp, 'puller')), layers });
    const pulledTop = await puller.pull(pushed.name, pushed.digest, new AbortController().signal);
    baseConfig = { ...image, rootfs: { type: 'layers', diff_ids: base.diffIds } };
    baseTop = await commitLayer(pulledTop ?? undefined, { 'on-top.txt': 'built on the base\n' });
  });

  test('without it, the base layers are reused as they came; the new layer is compressed as asked', async () => {
    const got = await fetchChecked((await push('derived:plain', { compression: 'zstd' }, baseTop, baseConfig)).name);
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual([
      ...Array(3).fill('application/vnd.oci.image.layer.v1.tar'),
      'application/vnd.oci.image.layer.v1.tar+zstd',
    ]);
    expect(got.manifest.layers.slice(0, 3).map((l) => l.digest)).toEqual(base.manifest.layers.map((l) => l.digest));
  });

  test('with it, the base layers are recompressed; their diff IDs stay', async () => {
    const got = await fetchChecked((await push('derived:forced', { compression: 'zstd', 'force-compression': 'true' }, baseTop, baseConfig)).name);
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(Array(4).fill('application/vnd.oci.image.layer.v1.tar+zstd'));
    expect(got.diffIds.slice(0, 3)).toEqual(base.diffIds);
    const gz = await fetchChecked((await push('derived:forced-gzip', { 'force-compression': 'true' }, baseTop, baseConfig)).name);
    expect(gz.manifest.layers.map((l) => l.mediaType)).toEqual(Array(4).fill('application/vnd.oci.image.layer.v1.tar+gzip'));
    expect(gz.diffIds).toEqual(got.diffIds);
  });

  test('a zstd base image is pulled (its layers applied through zstd) and converted back to gzip with force', async () => {
    const pushed = await push('base:zstd', { compression: 'zstd', 'compression-level': '7' });
    const zstdBase = await fetchChecked(pushed.name);
    // Fresh stores: the pull must apply the zstd blobs, not find snapshots it already has.
    const fresh = path.join(tmp, 'zstd-pull');
    const snaps = await OverlaySnapshotter.open(fresh);
    const pullDeps = { content: await LocalContentStore.open(path.join(fresh, 'content')), snapshotter: snaps, layers: await LayerIndex.open(fresh) };
    const puller = new ImagePuller({ ...pullDeps, registries: new SessionRegistries(client), cache: await CacheStore.open(fresh) });
    const pulledTop = await puller.pull(pushed.name, pushed.digest, new AbortController().signal);
    expect(pulledTop).not.toBeNull();
    const view = await snaps.mountView(pulledTop as string);
    try {
      expect(await fsp.readFile(path.join(view.path, 'srv/dir/c'), 'utf8')).toBe('c\n');
    } finally {
      await view.release();
    }
    const config = { ...image, rootfs: { type: 'layers' as const, diff_ids: zstdBase.diffIds } };
    const spec: ExportSpec = { type: 'image', attrs: { name: `${registry.host}/derived:from-zstd`, push: 'true', 'force-compression': 'true' } };
    await exportImage({ ...deps, ...pullDeps }, spec, [{ result: pulledTop, image: config, baseHistory: 0 }], session());
    const got = await fetchChecked(`${registry.host}/derived:from-zstd`);
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(Array(3).fill('application/vnd.oci.image.layer.v1.tar+gzip'));
    // Recompressed from the zstd blobs, it is the very gzip the snapshots gave at first.
    expect(got.manifest.layers.map((l) => l.digest)).toEqual(gzipDefaultLayers);
  });
});

describe('type=image without push: no blob is made that nothing reads', () => {
  /** Exports `result` as type=image with `attrs`, not pushed; the manifest it names. */
  async function keep(name: string, attrs: Record<string, string>, result: string): Promise<{ digest: string; configDigest: string; manifest: Manifest }> {
    const spec: ExportSpec = { type: 'image', attrs: { name: `${registry.host}/${name}`, ...attrs } };
    const response = await exportImage(deps, spec, [{ result, image, baseHistory: 0 }], session());
    const digest = response['containerimage.digest'] as string;
    return { digest, configDigest: response['containerimage.config.digest'] as string, manifest: (await content.readJson(digest)) as Manifest };
  }

  let fresh: string;
  let text: string;

  beforeAll(async () => {
    text = Array.from({ length: 5_000 }, (_, i) => `lazy line ${i}\n`).join('');
    const a = await commitLayer(undefined, { 'lazy/a.txt': text });
    fresh = await commitLayer(a, { 'lazy/b.txt': text.toUpperCase(), 'lazy/dir/c': 'c\n' });
  });

  test('built layers are described uncompressed by their diff ID, with no blob stored; a later push makes and keeps gzip blobs', async () => {
    const blobsBefore = (await fsp.readdir(path.join(root, 'content', 'blobs', 'sha256'))).length;
    const kept = await keep('lazy:kept', {}, fresh);
    expect(kept.manifest.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.oci.image.layer.v1.tar'));
    const config = (await content.readJson(kept.manifest.config.digest)) as ImageConfig;
    expect(kept.manifest.layers.map((l) => l.digest)).toEqual(config.rootfs.diff_ids);
    for (const layer of kept.manifest.layers) expect(await content.info(layer.digest)).toBeUndefined();
    // only the config and the manifest were written
    expect((await fsp.readdir(path.join(root, 'content', 'blobs', 'sha256'))).length).toBe(blobsBefore + 2);
    expect(await layers.get(fresh)).toBeUndefined();
    // the same export again gives the same image, from what the layer index remembers
    expect((await keep('lazy:again', {}, fresh)).digest).toBe(kept.digest);

    // Pushed, the same result gets real gzip blobs (checked by skopeo) of the same tars: the same config.
    const pushed = await push('lazy:pushed', {}, fresh);
    const got = await fetchChecked(pushed.name);
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.oci.image.layer.v1.tar+gzip'));
    expect(got.manifest.config.digest).toBe(kept.configDigest);
    // the sizes the lazy manifest gave are those of the tars
    for (const [i, layer] of got.manifest.layers.entries()) {
      const tar = (await run('gzip', ['-dc', content.blobPath(layer.digest)], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout;
      expect(tar.length).toBe(kept.manifest.layers[i]?.size);
    }
    // once blobs exist, the lazy export describes the layers from their records without a walk: the same image
    expect((await keep('lazy:after-push', {}, fresh)).digest).toBe(kept.digest);
  });

  test('a layer measured early is measured once: the export joins the measure under way, and one a cancelled build began is measured again', async () => {
    const spy = jest.spyOn(layerDiff, 'measureLayer');
    try {
      const early = await commitLayer(fresh, { 'lazy/early.txt': text + 'early' });
      premeasureLayer(deps, early, new AbortController().signal);
      premeasureLayer(deps, early, new AbortController().signal);
      const kept = await keep('lazy:early', {}, early);
      expect(spy.mock.calls.filter(([, id]) => id === early)).toHaveLength(1);
      expect(kept.manifest.layers).toHaveLength(3);

      const cancelled = await commitLayer(fresh, { 'lazy/cancelled.txt': text + 'cancelled' });
      const ac = new AbortController();
      ac.abort(new Error('the build was cancelled'));
      const err = Object.assign(new Error('aborted'), { name: 'AbortError' });
      spy.mockImplementationOnce(async () => {
        throw err;
      });
      premeasureLayer(deps, cancelled, ac.signal);
      const other = await keep('lazy:cancelled', {}, cancelled);
      const config = (await content.readJson(other.manifest.config.digest)) as ImageConfig;
      expect(config.rootfs.diff_ids[2]).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(spy.mock.calls.filter(([, id]) => id === cancelled)).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
  });

  test('a compression attribute asks for blobs now, as with push', async () => {
    const kept = await keep('lazy:zstd', { compression: 'zstd' }, fresh);
    expect(kept.manifest.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.oci.image.layer.v1.tar+zstd'));
    for (const layer of kept.manifest.layers) expect(await content.info(layer.digest)).toBeDefined();
  });
});
