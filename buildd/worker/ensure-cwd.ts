import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { mkdirAll } from '../../store/mkdir-all';
import { pathExists } from '../../store/path-exists';
import { resolveInRoot } from '../../store/safe-path';

/**
 * Creates the working directory inside the rootfs when missing, as BuildKit's runc executor
 * does (MkdirAllAndChown 0755 to the step's user): every missing component gets mode 0755
 * and the user's uid/gid, existing ones are left alone. Unlike the mount stubs it stays in
 * the layer, as in BuildKit: a RUN in a fresh WORKDIR leaves that directory behind.
 * A working directory in /proc or /dev's links to it, written so or reached through the
 * image's symlinks, is refused with invalid-argument before anything is created.
 */
export async function ensureCwd(rootfs: string, cwd: string, owner: { uid: number; gid: number }): Promise<void> {
  const root = path.resolve(rootfs);
  refuseMagicCwd(cwd, cwd);
  // resolved inside the rootfs: a symlinked component never leads the mkdir onto the host
  const target = await resolveInRoot(root, cwd);
  // a symlink in the image (`ln -s /proc/self/fd/7 /w`, WORKDIR /w) is the same trick
  refuseMagicCwd(cwd, '/' + path.relative(root, target));
  // Anything already there is runc's to judge (a file fails its chdir with a clear error).
  if (await pathExists(target)) return;
  await mkdirAll(root, target, 0o755, owner);
}

/**
 * Paths whose entries are magic links in the container: /proc (fd/N, cwd, root of any process)
 * and the links runc puts in /dev to it. A working directory through one of them could be an
 * fd runc holds open while it starts the container, i.e. a directory of the host (runc's
 * CVE-2024-21626). Fixed runc versions check this too; buildd does not rely on the runc it
 * finds. Images have nothing of their own there (runc mounts over both), so refusing costs
 * no real Dockerfile anything.
 */
const MAGIC_PREFIXES = ['/proc', '/dev/fd', '/dev/stdin', '/dev/stdout', '/dev/stderr', '/dev/core'];

function refuseMagicCwd(cwd: string, containerPath: string): void {
  const p = path.posix.normalize('/' + containerPath);
  const hit = MAGIC_PREFIXES.find((prefix) => p === prefix || p.startsWith(prefix + '/'));
  if (hit === undefined) return;
  const via = p === path.posix.normalize('/' + cwd) ? '' : ` (it resolves to ${p})`;
  throw new BuildError('invalid-argument', `Cannot use working directory ${cwd}: it is inside ${hit}${via}, whose entries can lead outside the container`);
}
