import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/**
 * Makes a new network namespace that lives on after its process: `unshare --net=FILE` bind
 * mounts the namespace of a short-lived helper onto FILE (an empty file made here).
 *
 * Why not `ip netns add`: that keeps its files under /run/netns, shared with every other tool
 * on the host and outside buildd's root, so a restart could not tell its own from others'.
 * A file under buildd's root is buildd's by construction, and survives as a record of what
 * to tear down after a kill -9. Only loopback (down) is in the namespace; CNI does the rest.
 */
export async function createNetns(file: string): Promise<void> {
  // 'wx': an existing file is another sandbox's namespace, never to be reused
  await fsp.writeFile(file, '', { flag: 'wx', mode: 0o600 });
  try {
    await execFileP('unshare', [`--net=${file}`, 'true']);
  } catch (err) {
    await fsp.rm(file, { force: true });
    throw new Error(`unshare --net failed: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
  }
}

/**
 * Unmounts and removes a namespace file. The namespace (and the veth end inside it, whose
 * peer goes with it) is gone once no process is left in it.
 */
export async function removeNetns(file: string): Promise<void> {
  if (await isNetnsMounted(file)) {
    try {
      await execFileP('umount', [file]);
    } catch {
      // busy: detach it, the kernel frees it when the last user goes
      await execFileP('umount', ['-l', file]);
    }
  }
  await fsp.rm(file, { force: true });
}

/** Whether `file` is a mount point (a live namespace), from /proc/self/mountinfo. */
export async function isNetnsMounted(file: string): Promise<boolean> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    // field 5 is the mount point, with space, tab, newline and backslash escaped in octal
    const mountPoint = line.split(' ')[4];
    if (mountPoint !== undefined && unescapeMountinfo(mountPoint) === file) return true;
  }
  return false;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
