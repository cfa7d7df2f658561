import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { resolveInRoot } from '../../store/safe-path';
import { pathExists } from '../../store/path-exists';

/**
 * Creates the working directory inside the rootfs when missing, as BuildKit's runc executor
 * does (MkdirAllAndChown 0755 to the step's user): every missing component gets mode 0755
 * and the user's uid/gid. Unlike the mount stubs it stays in the layer, as in BuildKit: a RUN
 * in a fresh WORKDIR leaves that directory behind.
 */
export async function ensureCwd(rootfs: string, cwd: string, owner: { uid: number; gid: number }): Promise<void> {
  const root = path.resolve(rootfs);
  // resolved inside the rootfs: a symlinked component never leads the mkdir onto the host
  const target = await resolveInRoot(root, cwd);
  const missing: string[] = [];
  for (let p = target; p !== root && !(await pathExists(p)); p = path.dirname(p)) missing.unshift(p);
  for (const dir of missing) {
    try {
      await fsp.mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      continue;
    }
    // chmod after mkdir: the daemon's umask must not decide the mode that lands in the layer
    await fsp.chmod(dir, 0o755);
    await fsp.chown(dir, owner.uid, owner.gid);
  }
}
