import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { request } from 'undici';
import { makeBusyboxRootfs } from '../../helpers/busybox-image';
import { mustRun, type CommandResult, type RunCommandOptions } from './run-command';

/** `ENV PATH` of both base images, as the familiar ones have it. */
const PATH_ENV = 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What making a base image needs of the reference world. */
export interface BaseImageContext {
  stateDir: string;
  /** `HOST:PORT` of the registry */
  registry: string;
  docker(args: readonly string[], opts?: RunCommandOptions): Promise<CommandResult>;
  log(line: string): void;
}

/**
 * The base images the cases build on, in the registry (`localhost:5000/...` in a Dockerfile):
 * busybox:latest and busybox:multi always, debian:bookworm when asked. An image already there
 * is left as it is.
 * Then dockerd pulls them: its builder takes an image it holds by that name without asking the
 * registry, and what it holds may be another build of it (its own earlier import, when the
 * registry serving now is another's), while buildd always resolves through the registry.
 */
export async function ensureBaseImages(ctx: BaseImageContext, debian: boolean): Promise<void> {
  if (!(await hasImage(ctx.registry, 'busybox', 'latest'))) await pushBusybox(ctx);
  // busybox:multi, an index of linux/amd64 and linux/arm64 for the foreign-platform cases; not
  // pulled into dockerd: its image store would keep one platform under that name
  if (!(await hasImage(ctx.registry, 'busybox', 'multi'))) {
    ctx.log('making localhost:5000/busybox:multi (busybox-static, amd64 and arm64)');
    await mustRun('push busybox:multi', 'bash', [path.join(__dirname, '..', '..', '..', 'scripts', 'multiarch-busybox.sh'), ctx.registry]);
  }
  if (debian && !(await hasImage(ctx.registry, 'debian', 'bookworm'))) await pushDebian(ctx);
  for (const ref of ['localhost:5000/busybox:latest', ...(debian ? ['localhost:5000/debian:bookworm'] : [])]) {
    const res = await ctx.docker(['pull', '-q', ref], { logFile: path.join(ctx.stateDir, 'base-images.log') });
    if (res.code !== 0) throw new Error(`Cannot pull ${ref} into the reference dockerd: docker exited with ${res.code}: ${(res.stderr || res.stdout).trim().slice(-2000)}`);
  }
}

export async function hasImage(registry: string, repo: string, tag: string): Promise<boolean> {
  const accept = [
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.oci.image.index.v1+json',
  ].join(', ');
  const res = await request(`http://${registry}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { accept }, headersTimeout: 10_000 });
  await res.body.dump();
  return res.statusCode === 200;
}

/** A small busybox image, the rootfs the tests' own registries get (makeBusyboxRootfs), `CMD ["sh"]`. */
async function pushBusybox(ctx: BaseImageContext): Promise<void> {
  ctx.log('making localhost:5000/busybox:latest (busybox-static)');
  const root = path.join(ctx.stateDir, 'busybox-rootfs');
  const tarFile = path.join(ctx.stateDir, 'busybox-rootfs.tar');
  await fsp.rm(root, { recursive: true, force: true });
  await makeBusyboxRootfs(root);
  await mustRun('pack the busybox rootfs', 'tar', ['--numeric-owner', '-C', root, '-cf', tarFile, '.']);
  await importAndPush(ctx, tarFile, 'localhost:5000/busybox:latest', 'CMD ["sh"]');
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.rm(tarFile, { force: true });
}

/**
 * Debian bookworm, a debootstrap minbase from the machine's own mirror, `CMD ["bash"]`. The
 * rootfs tar is kept in the state directory: debootstrap takes minutes and needs the network.
 */
async function pushDebian(ctx: BaseImageContext): Promise<void> {
  const tarFile = path.join(ctx.stateDir, 'debian-rootfs.tar');
  if (!(await fsp.access(tarFile).then(() => true, () => false))) {
    const root = path.join(ctx.stateDir, 'debian-rootfs');
    const mirror = await debianMirror();
    ctx.log(`debootstrap --variant=minbase bookworm from ${mirror} (once: the result is kept as ${tarFile})`);
    await fsp.rm(root, { recursive: true, force: true });
    const logFile = path.join(ctx.stateDir, 'debootstrap.log');
    await mustRun('debootstrap Debian bookworm', 'debootstrap', ['--variant=minbase', 'bookworm', root, mirror], { logFile, timeoutMs: 1_800_000 });
    await mustRun('pack the Debian rootfs', 'tar', ['--numeric-owner', '-C', root, '-cf', `${tarFile}.partial`, '.']);
    await fsp.rename(`${tarFile}.partial`, tarFile);
    await fsp.rm(root, { recursive: true, force: true });
  }
  ctx.log('pushing localhost:5000/debian:bookworm');
  await importAndPush(ctx, tarFile, 'localhost:5000/debian:bookworm', 'CMD ["bash"]');
}

async function importAndPush(ctx: BaseImageContext, tarFile: string, ref: string, cmd: string): Promise<void> {
  const logFile = path.join(ctx.stateDir, 'base-images.log');
  const check = (what: string, res: CommandResult): void => {
    if (res.code !== 0) throw new Error(`Cannot ${what} ${ref}: docker exited with ${res.code}: ${(res.stderr || res.stdout).trim().slice(-2000)}`);
  };
  check('import', await ctx.docker(['import', '-c', PATH_ENV, '-c', cmd, tarFile, ref], { logFile }));
  check('push', await ctx.docker(['push', '-q', ref], { logFile }));
}

/** The machine's Debian mirror (deb822 or one-line sources), else deb.debian.org. */
async function debianMirror(): Promise<string> {
  const deb822 = await fsp.readFile('/etc/apt/sources.list.d/debian.sources', 'utf8').catch(() => '');
  const uri = /^URIs:\s*(\S+)/m.exec(deb822)?.[1];
  if (uri) return uri;
  const list = await fsp.readFile('/etc/apt/sources.list', 'utf8').catch(() => '');
  return /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(list)?.[1] ?? 'http://deb.debian.org/debian';
}
