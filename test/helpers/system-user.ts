import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { waitFor } from './wait-for';

const run = promisify(execFile);

/**
 * A real passwd user made for one test (tests run as root): a unique name, its home in the
 * test's temp dir, /bin/sh as shell and an unlocked password field (`*`: no password can
 * log in, but sshd without PAM refuses accounts whose password is locked with `!`).
 *
 * Lifecycle: `createSystemUser` adds the user and makes its home (owned by it, 0755);
 * `remove` deletes the user and its group (`userdel`) and leaves the home to the test's temp
 * dir cleanup. Call `remove` in afterAll.
 */
export interface SystemUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  remove(): Promise<void>;
}

export async function createSystemUser(home: string): Promise<SystemUser> {
  const name = `bdt${randomBytes(5).toString('hex')}`;
  await run('useradd', ['--no-create-home', '--home-dir', home, '--shell', '/bin/sh', '--password', '*', '--user-group', name]);
  let removed = false;
  const remove = async (): Promise<void> => {
    if (removed) return;
    removed = true;
    // A server's per-connection children (sshd's) may still be exiting; userdel refuses a
    // user that owns a process.
    const uid = Number((await run('id', ['-u', name])).stdout.trim());
    await waitFor(`the processes of ${name} to exit`, async () => ((await processesOf(uid)).length === 0 ? true : undefined), 10_000);
    await run('userdel', [name]);
  };
  try {
    const uid = Number((await run('id', ['-u', name])).stdout.trim());
    const gid = Number((await run('id', ['-g', name])).stdout.trim());
    await fsp.mkdir(home, { recursive: true, mode: 0o755 });
    await fsp.chown(home, uid, gid);
    return { name, uid, gid, home, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

/** Pids of the processes whose real uid is `uid`, read from /proc. */
async function processesOf(uid: number): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const status = await fsp.readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
    const real = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (real !== undefined && Number(real) === uid) pids.push(Number(entry));
  }
  return pids;
}
