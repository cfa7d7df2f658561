import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';

const run = promisify(execFile);

/** What `pushOciImage` pushed. */
export interface PushedImage {
  /** `HOST/repo:tag` */
  ref: string;
  /** The manifest digest, as the registry stores it. */
  digest: string;
  configDigest: string;
  layerDigests: string[];
}

async function hashFile(file: string, gunzip: boolean): Promise<string> {
  const hash = createHash('sha256');
  if (gunzip) await pipeline(createReadStream(file), createGunzip(), hash);
  else await pipeline(createReadStream(file), hash);
  return 'sha256:' + hash.digest('hex');
}

async function isGzip(file: string): Promise<boolean> {
  const fh = await fsp.open(file, 'r');
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/**
 * Writes an OCI layout by hand from layer tar files (gzip or plain) and pushes it with skopeo,
 * an independent client, so that test base images never depend on our own push code.
 * The layer files are left where they are; everything else made here is removed.
 */
export async function pushOciImage(
  registryHost: string,
  repo: string,
  tag: string,
  layerFiles: string[],
  containerConfig: Record<string, unknown> = { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
): Promise<PushedImage> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-oci-image-'));
  try {
    const layout = path.join(dir, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    await fsp.mkdir(blobs, { recursive: true });
    const layers: Array<{ mediaType: string; digest: string; size: number }> = [];
    const diffIds: string[] = [];
    for (const file of layerFiles) {
      const gz = await isGzip(file);
      const digest = await hashFile(file, false);
      diffIds.push(gz ? await hashFile(file, true) : digest);
      const size = (await fsp.stat(file)).size;
      await fsp.copyFile(file, path.join(blobs, digest.slice(7)));
      layers.push({ mediaType: gz ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar', digest, size });
    }
    const writeBlob = async (text: string): Promise<{ digest: string; size: number }> => {
      const digest = 'sha256:' + createHash('sha256').update(text).digest('hex');
      await fsp.writeFile(path.join(blobs, digest.slice(7)), text);
      return { digest, size: Buffer.byteLength(text) };
    };
    const config = await writeBlob(JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: containerConfig,
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: layerFiles.map((f) => ({ created_by: `buildd test helper: ${path.basename(f)}` })),
    }));
    const manifest = await writeBlob(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers,
    }));
    await fsp.writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await fsp.writeFile(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }));
    const ref = `${registryHost}/${repo}:${tag}`;
    const digestFile = path.join(dir, 'digest');
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--digestfile', digestFile, `oci:${layout}:latest`, `docker://${ref}`]);
    const digest = (await fsp.readFile(digestFile, 'utf8')).trim();
    return { ref, digest, configDigest: config.digest, layerDigests: layers.map((l) => l.digest) };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
