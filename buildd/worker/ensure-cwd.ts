import * as path from 'node:path';
import { mkdirAll } from '../../store/mkdir-all';
import { pathExists } from '../../store/path-exists';
import { resolveInRoot } from '../../store/safe-path';

/**
 * Creates the working directory inside the rootfs when missing, as BuildKit's runc executor
 * does (MkdirAllAndChown 0755 to the step's user): every missing component gets mode 0755
 * and the user's uid/gid, existing ones are left alone. Unlike the mount stubs it stays in
 * the layer, as in BuildKit: a RUN in a fresh WORKDIR leaves that directory behind.
 */
export async function ensureCwd(rootfs: string, cwd: string, owner: { uid: number; gid: number }): Promise<void> {
  const root = path.resolve(rootfs);
  // resolved inside the rootfs: a symlinked component never leads the mkdir onto the host
  const target = await resolveInRoot(root, cwd);
  // Anything already there is runc's to judge (a file fails its chdir with a clear error).
  if (await pathExists(target)) return;
  await mkdirAll(root, target, 0o755, owner);
}
