import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { encodeTarHeader, padding, TAR_END } from '../../../store/tar-header';

/** One entry of a test layer; file unless `type` says otherwise, 0644 (0755 for a directory) 0:0. */
export interface LayerEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device';
  body?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** SCHILY.xattr.* records, values as bytes */
  xattrs?: Record<string, Buffer>;
}

export type Compression = 'gzip' | 'zstd' | 'none';

/** A layer tar in memory: small test layers only. Entries with xattrs get PAX records as bytes. */
export async function layerTar(entries: LayerEntry[]): Promise<Buffer> {
  if (entries.some((e) => e.xattrs)) return handWrittenTar(entries);
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    pack.entry({ name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, linkname: e.linkname, mtime: new Date(1_700_000_000_000), devmajor: 1, devminor: 3 }, e.body ?? '');
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function handWrittenTar(entries: LayerEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'file';
    const body = Buffer.from(e.body ?? '');
    const size = type === 'file' ? body.length : 0;
    parts.push(encodeTarHeader({ name: e.name, type, mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, size, mtime: 1_700_000_000, linkname: e.linkname, xattrs: e.xattrs ? new Map(Object.entries(e.xattrs)) : undefined }));
    if (size > 0) parts.push(body, padding(size));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

export function compress(data: Buffer, how: Compression): Buffer {
  if (how === 'gzip') return gzipSync(data);
  if (how === 'zstd') return execFileSync('zstd', ['-q', '-c'], { input: data });
  return data;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What a test image is made of: layers (bottom first) and the image config. */
export interface TestImage {
  layers: LayerEntry[][];
  config?: Record<string, unknown>;
  compression?: Compression;
}

async function blobsOf(img: TestImage): Promise<{ layers: Buffer[]; config: Buffer }> {
  const layers = await Promise.all(img.layers.map(async (l) => compress(await layerTar(l), img.compression ?? 'none')));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [], ...img.config }));
  return { layers, config };
}

async function writeOuterTar(file: string, members: Array<[string, Buffer]>): Promise<void> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const [name, body] of members) pack.entry({ name, mode: 0o644 }, body);
  pack.finalize();
  await done;
  await fsp.writeFile(file, Buffer.concat(chunks));
}

/** `docker save`'s layout: manifest.json, the config, one directory per layer. */
export async function writeDockerArchive(file: string, img: TestImage): Promise<string> {
  const { layers, config } = await blobsOf(img);
  const names = layers.map((l, i) => `${i}${sha(l).slice(0, 12)}/layer.tar`);
  const manifest = [{ Config: `${sha(config)}.json`, RepoTags: ['test:1'], Layers: names }];
  await writeOuterTar(file, [['manifest.json', Buffer.from(JSON.stringify(manifest))], [`${sha(config)}.json`, config], ...layers.map((l, i): [string, Buffer] => [names[i], l])]);
  return file;
}

/**
 * An OCI image layout tar; with `nested`, index.json names an index of two platforms whose
 * linux/amd64 entry is this image and whose first is an arm64 image of `nested`.
 */
export async function writeOciLayout(file: string, img: TestImage, nested?: TestImage): Promise<string> {
  const members: Array<[string, Buffer]> = [['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')]];
  const blob = (b: Buffer): { digest: string; size: number } => {
    members.push([`blobs/sha256/${sha(b)}`, b]);
    return { digest: `sha256:${sha(b)}`, size: b.length };
  };
  const manifestOf = async (i: TestImage): Promise<{ digest: string; size: number }> => {
    const { layers, config } = await blobsOf(i);
    const m = { schemaVersion: 2, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...blob(config) }, layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...blob(l) })) };
    return blob(Buffer.from(JSON.stringify(m)));
  };
  let top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...(await manifestOf(img)) };
  if (nested) {
    const other = await manifestOf(nested);
    const index = { schemaVersion: 2, manifests: [{ ...other, platform: { architecture: 'arm64', os: 'linux' } }, { ...top, platform: { architecture: 'amd64', os: 'linux' } }] };
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', ...blob(Buffer.from(JSON.stringify(index))) };
  }
  members.push(['index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [top] }))]);
  await writeOuterTar(file, members);
  return file;
}
