import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { PushedImage, pushOciImage } from './push-oci-image';

const run = promisify(execFile);

/** What `pushBusyboxImage` pushed: the image and its one layer. */
export type BusyboxImage = PushedImage & { layerDigest: string };

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
 * A busybox image (system tar for the gzip layer) pushed with skopeo, an independent client,
 * so that tests of our registry client do not depend on our own push. Leaves nothing behind.
 */
export async function pushBusyboxImage(registryHost: string, repo = 'busybox', tag = 'latest'): Promise<BusyboxImage> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-busybox-'));
  try {
    const root = path.join(dir, 'rootfs');
    await makeBusyboxRootfs(root);
    const layerFile = path.join(dir, 'layer.tar.gz');
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', root, '-czf', layerFile, '.']);
    const pushed = await pushOciImage(registryHost, repo, tag, [layerFile]);
    return { ...pushed, layerDigest: pushed.layerDigests[0] };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
