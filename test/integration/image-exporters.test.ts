import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { BuildError } from '../../solver/build-error';
import { LocalContentStore } from '../../store/content-store';
import { exportDockerArchive } from '../../store/docker-archive-exporter';
import { ExportImage, exportOciLayout } from '../../store/oci-layout-exporter';
import { RegistryClient } from '../../store/registry-client';
import { flattenImage, type FlatImage } from '../conformance/harness/flatten-image';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { TestRegistry, startRegistry } from '../helpers/registry';

const run = promisify(execFile);
jest.setTimeout(60_000);

let registry: TestRegistry;
let tmp: string;
let store: LocalContentStore;
let image: ExportImage;

beforeAll(async () => {
  registry = await startRegistry();
  const pushed = await pushBusyboxImage(registry.host);
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-exporters-'));
  store = await LocalContentStore.open(path.join(tmp, 'content'));
  const client = new RegistryClient();
  try {
    const got = await client.resolve(pushed.ref);
    await client.fetchBlob(pushed.ref, got.configDescriptor, store);
    for (const layer of got.manifest.layers) await client.fetchBlob(pushed.ref, layer, store);
    image = {
      manifestDigest: got.digest,
      manifest: got.manifestBytes,
      mediaType: got.mediaType,
      configDigest: got.configDescriptor.digest,
      layers: got.manifest.layers,
      name: 'docker.io/library/exported:1',
    };
  } finally {
    await client.close();
  }
});

afterAll(async () => {
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

async function tarList(tar: string): Promise<string[]> {
  const { stdout } = await run('tar', ['-tf', tar]);
  return stdout.split('\n').filter(Boolean);
}

function expectBusybox(flat: FlatImage): void {
  expect(flat.config.Cmd).toEqual(['sh']);
  expect(flat.files['bin/busybox']).toMatchObject({ type: 'file', mode: '0o755' });
  expect(flat.files['bin/sh']).toMatchObject({ type: 'symlink', target: 'busybox' });
  expect(flat.files['tmp']).toMatchObject({ type: 'dir', mode: '0o1777' });
}

test('OCI layout tar: the conformance harness flattens it and skopeo reads it as oci-archive', async () => {
  const out = path.join(tmp, 'oci.tar');
  await exportOciLayout(image, store, createWriteStream(out));
  expectBusybox(await flattenImage(out));
  const members = await tarList(out);
  expect(members).toEqual(expect.arrayContaining(['oci-layout', 'index.json', `blobs/sha256/${image.manifestDigest.slice(7)}`]));
  const { stdout } = await run('skopeo', ['inspect', `oci-archive:${out}`]);
  const inspected = JSON.parse(stdout) as { Digest: string; Architecture: string; Layers: string[] };
  expect(inspected.Digest).toBe(image.manifestDigest);
  expect(inspected.Architecture).toBe('amd64');
  expect(inspected.Layers).toEqual(image.layers.map((l) => l.digest));
  const { stdout: index } = await run('tar', ['-xOf', out, 'index.json']);
  expect(JSON.parse(index)).toMatchObject({
    manifests: [{ digest: image.manifestDigest, annotations: { 'org.opencontainers.image.ref.name': '1', 'io.containerd.image.name': 'docker.io/library/exported:1' } }],
  });
});

test('docker archive: manifest.json with RepoTags, readable by the conformance harness and skopeo docker-archive', async () => {
  const out = path.join(tmp, 'docker.tar');
  await exportDockerArchive(image, store, createWriteStream(out));
  const { stdout: manifestJson } = await run('tar', ['-xOf', out, 'manifest.json']);
  expect(JSON.parse(manifestJson)).toEqual([{
    Config: `blobs/sha256/${image.configDigest.slice(7)}`,
    RepoTags: ['exported:1'],
    Layers: image.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
  }]);
  expectBusybox(await flattenImage(out));
  const { stdout } = await run('skopeo', ['inspect', `docker-archive:${out}`]);
  const inspected = JSON.parse(stdout) as { RepoTags: string[]; Architecture: string; Layers: string[] };
  expect(inspected.Architecture).toBe('amd64');
  expect(inspected.Layers).toHaveLength(image.layers.length);
});

test('a slow consumer gets the same bytes (backpressure), and an abort stops the export', async () => {
  const fast = path.join(tmp, 'fast.tar');
  await exportOciLayout(image, store, createWriteStream(fast));
  const hash = createHash('sha256');
  let maxBuffered = 0;
  const slow = new Writable({
    highWaterMark: 1024,
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      maxBuffered = Math.max(maxBuffered, this.writableLength);
      setImmediate(cb);
    },
  });
  await exportOciLayout(image, store, slow);
  const expected = createHash('sha256').update(await fsp.readFile(fast)).digest('hex');
  expect(hash.digest('hex')).toBe(expected);
  // The layer is ~1 MiB: had backpressure been ignored, most of it would sit in the buffer.
  expect(maxBuffered).toBeLessThan(256 * 1024);

  // The export fails with the abort, not with whatever else might go wrong (a closed stream, a
  // missing blob): Node reports it as an AbortError whose cause is the signal's reason.
  const controller = new AbortController();
  const reason = new BuildError('cancelled', 'Cannot continue: the client went away');
  let written = 0;
  const aborting = new Writable({
    write(chunk: Buffer, _enc, cb) {
      written += chunk.length;
      if (written > 64 * 1024) controller.abort(reason);
      cb();
    },
  });
  await expect(exportOciLayout(image, store, aborting, controller.signal)).rejects.toMatchObject({
    name: 'AbortError',
    code: 'ABORT_ERR',
    message: 'The operation was aborted',
    cause: reason,
  });
  expect(aborting.destroyed).toBe(true);
});
