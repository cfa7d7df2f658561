import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';

const run = promisify(execFile);

/** What `pushBusyboxImage` pushed. */
export interface PushedImage {
  /** `HOST/repo:tag` */
  ref: string;
  /** The manifest digest, as the registry stores it. */
  digest: string;
  configDigest: string;
  layerDigest: string;
}

async function hashStream(file: string, gunzip: boolean): Promise<string> {
  const hash = createHash('sha256');
  if (gunzip) await pipeline(createReadStream(file), createGunzip(), hash);
  else await pipeline(createReadStream(file), hash);
  return 'sha256:' + hash.digest('hex');
}

/** A root filesystem like the familiar busybox image (as reference.sh's busybox_rootfs). */
export async function makeBusyboxRootfs(root: string): Promise<void> {
  for (const d of ['bin', 'etc', 'root', 'tmp', 'home', 'var/tmp', 'usr/bin', 'usr/sbin']) {
    await fsp.mkdir(path.join(root, d), { recursive: true });
  }
  const { stdout: where } = await run('sh', ['-c', 'command -v busybox']);
  await fsp.copyFile(where.trim(), path.join(root, 'bin/busybox'));
  await fsp.chmod(path.join(root, 'bin/busybox'), 0o755);
  const { stdout } = await run(path.join(root, 'bin/busybox'), ['--list']);
  for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox')) {
    await fsp.symlink('busybox', path.join(root, 'bin', applet)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  await fsp.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n');
  await fsp.writeFile(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  await fsp.chmod(path.join(root, 'tmp'), 0o1777);
  await fsp.chmod(path.join(root, 'var/tmp'), 0o1777);
  await fsp.chmod(path.join(root, 'root'), 0o700);
}

/**
 * Builds a busybox image by hand (system tar for the gzip layer, an OCI layout written here)
 * and pushes it with skopeo, an independent client, so that tests of our registry client do
 * not depend on our own push. Leaves nothing behind on disk.
 */
export async function pushBusyboxImage(registryHost: string, repo = 'busybox', tag = 'latest'): Promise<PushedImage> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-busybox-'));
  try {
    const root = path.join(dir, 'rootfs');
    await makeBusyboxRootfs(root);
    const layout = path.join(dir, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    await fsp.mkdir(blobs, { recursive: true });
    const layerFile = path.join(dir, 'layer.tar.gz');
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', root, '-czf', layerFile, '.']);
    const layerDigest = await hashStream(layerFile, false);
    const diffId = await hashStream(layerFile, true);
    const layerSize = (await fsp.stat(layerFile)).size;
    await fsp.rename(layerFile, path.join(blobs, layerDigest.slice(7)));

    const writeBlob = async (text: string): Promise<{ digest: string; size: number }> => {
      const digest = 'sha256:' + createHash('sha256').update(text).digest('hex');
      await fsp.writeFile(path.join(blobs, digest.slice(7)), text);
      return { digest, size: Buffer.byteLength(text) };
    };
    const config = await writeBlob(JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created_by: 'buildd test helper: busybox-static rootfs' }],
    }));
    const manifest = await writeBlob(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layerSize }],
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
    return { ref, digest, configDigest: config.digest, layerDigest };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
