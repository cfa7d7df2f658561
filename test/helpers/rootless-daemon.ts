import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { makeCerts } from './certs';
import { ensureBuilt, type TestDaemon } from './daemon';
import { createSystemUser, type SystemUser } from './system-user';
import { watchDaemon } from './daemon-process';

const run = promisify(execFile);
const DIST = path.resolve(__dirname, '..', '..', 'dist');
const SUBIDS = 65536;

/** A user for `buildd --rootless`: a SystemUser with at least 65536 subordinate uids and gids. */
export interface RootlessUser extends SystemUser {
  /** `start-end` ranges of /etc/subuid and /etc/subgid this user has */
  subuids: string[];
  subgids: string[];
}

/** The `owner:start:count` lines of `file` that name `name`, as `start-end` ranges. */
async function rangesOf(file: string, name: string): Promise<string[]> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((l) => l.trim().split(':'))
    .filter((f) => f.length === 3 && f[0] === name)
    .map((f) => `${f[1]}-${Number(f[1]) + Number(f[2]) - 1}`);
}

/** The first id past every range of `file`, at least 100000 (login.defs' SUB_UID_MIN). */
async function firstFree(file: string): Promise<number> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  let end = 100000;
  for (const f of text.split('\n').map((l) => l.trim().split(':'))) {
    if (f.length === 3) end = Math.max(end, Number(f[1]) + Number(f[2]));
  }
  return end;
}

/**
 * Creates the user (createSystemUser, home `home`); when useradd did not give it 65536
 * subordinate ids (SUB_UID_COUNT in login.defs), adds a free range with usermod. `remove`
 * deletes the ranges with usermod, then the user (userdel), and checks that /etc/subuid and
 * /etc/subgid no longer name it.
 */
export async function createRootlessUser(home: string): Promise<RootlessUser> {
  const user = await createSystemUser(home);
  try {
    for (const [file, flag] of [
      ['/etc/subuid', '--add-subuids'],
      ['/etc/subgid', '--add-subgids'],
    ] as const) {
      if ((await rangesOf(file, user.name)).length > 0) continue;
      const start = await firstFree(file);
      await run('usermod', [flag, `${start}-${start + SUBIDS - 1}`, user.name]);
    }
    const subuids = await rangesOf('/etc/subuid', user.name);
    const subgids = await rangesOf('/etc/subgid', user.name);
    const remove = async (): Promise<void> => {
      const args = [...subuids.flatMap((r) => ['--del-subuids', r]), ...subgids.flatMap((r) => ['--del-subgids', r])];
      if (args.length > 0) await run('usermod', [...args, user.name]).catch(() => undefined);
      await user.remove();
      for (const file of ['/etc/subuid', '/etc/subgid']) {
        const left = await rangesOf(file, user.name);
        if (left.length > 0) throw new Error(`Cannot remove user ${user.name}: ${file} still gives it ${left.join(', ')}`);
      }
    };
    return { ...user, subuids, subgids, remove };
  } catch (err) {
    await user.remove();
    throw err;
  }
}

/**
 * Where the setpriv command line runs: `command` wraps it (e.g. in namespaces of its own, see
 * masked-proc-pod.ts), `terminate` asks the daemon in it to stop.
 */
export interface DaemonLauncher {
  command(argv: readonly string[]): [string, string[]];
  terminate(child: ChildProcess): Promise<void>;
}

/**
 * `buildd --rootless` (bin/buildd, real builder) started as `user` with setpriv, listening on a
 * free loopback port with fresh mutual-TLS certificates that the user owns, its root `root`
 * (default `<home>/root`). Lifecycle as TestDaemon: `stop()` sends SIGTERM to buildd (which
 * passes it through rootlesskit), waits for the exit, and removes the certificates; the root is
 * the caller's (it holds files owned by the user's subordinate ids, which only root can remove).
 */
export async function startRootlessDaemon(user: SystemUser, opts: { root?: string; extraArgs?: string[]; launcher?: DaemonLauncher } = {}): Promise<TestDaemon> {
  ensureBuilt();
  const root = opts.root ?? path.join(user.home, 'root');
  const certs = await makeCerts(path.join(user.home, 'certs'));
  await run('chown', ['-R', `${user.uid}:${user.gid}`, certs.dir]);
  const args = ['--rootless', '--addr', 'tcp://127.0.0.1:0', '--root', root, '--tlscacert', certs.daemon.ca, '--tlscert', certs.daemon.cert, '--tlskey', certs.daemon.key, ...(opts.extraArgs ?? [])];
  const argv = ['setpriv', '--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', process.execPath, path.join(DIST, 'buildd', 'main.js'), ...args];
  const [command, commandArgs] = opts.launcher ? opts.launcher.command(argv) : [argv[0] as string, argv.slice(1)];
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: user.home,
    env: { PATH: process.env['PATH'], HOME: user.home, USER: user.name, LOGNAME: user.name },
  });
  const removeCerts = (): Promise<void> => fsp.rm(certs.dir, { recursive: true, force: true });
  const terminate = opts.launcher ? (): Promise<void> => (opts.launcher as DaemonLauncher).terminate(child) : undefined;
  const watched = await watchDaemon(child, 'buildd --rootless', 'SIGTERM', removeCerts, terminate);
  return {
    addr: watched.addr,
    certsDir: certs.dir,
    root,
    process: child,
    stderr: watched.stderr,
    stop: async () => {
      const code = await watched.stop();
      await removeCerts();
      return code;
    },
  };
}
