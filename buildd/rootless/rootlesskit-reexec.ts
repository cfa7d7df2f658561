import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { readSubidRanges } from './subid-ranges';

/**
 * Ids a rootless buildd needs mapped besides its own: 1..65535, so that a step's
 * `chown 4242:4343` and an image's `nobody` (65534) exist in its namespace.
 */
export const MIN_SUBIDS = 65536;

/** Where the subordinate id ranges are read from (a test points them elsewhere). */
export interface SubidFiles {
  subuid: string;
  subgid: string;
}

const DEFAULT_SUBID_FILES: SubidFiles = { subuid: '/etc/subuid', subgid: '/etc/subgid' };

/**
 * Checks that the user may map enough ids, so that a missing /etc/subuid line fails with what
 * to do rather than with newuidmap's "write to uid_map failed". Throws `failed-precondition`.
 */
export async function checkSubids(user: { name: string; uid: number; gid: number }, files: SubidFiles = DEFAULT_SUBID_FILES): Promise<void> {
  for (const [file, id, flag] of [
    [files.subuid, user.uid, '--add-subuids'],
    [files.subgid, user.gid, '--add-subgids'],
  ] as const) {
    const ranges = await readSubidRanges(file, { name: user.name, id });
    const total = ranges.reduce((n, r) => n + r.count, 0);
    if (total < MIN_SUBIDS) {
      throw new BuildError(
        'failed-precondition',
        `Cannot start buildd --rootless: ${file} gives user ${user.name} ${total} subordinate ids, it needs at least ${MIN_SUBIDS} (as root: usermod ${flag} 100000-165535 ${user.name})`,
      );
    }
  }
}

/**
 * Runs this same buildd again under rootlesskit, which makes a user namespace (uid/gid maps
 * from /etc/subuid and /etc/subgid through the setuid newuidmap/newgidmap) and a mount
 * namespace, and starts buildd in them as their root: what `rootlesskit buildkitd` does for
 * BuildKit, done by buildd itself so that `buildd --rootless` is the whole command.
 *
 * The network stays the host's (`--net=host`): the daemon listens and pulls on the host's
 * addresses (a test's registry on 127.0.0.1 included). RUN steps go through a CNI bridge in a
 * namespace of buildd's own, which slirp4netns connects out (slirp-uplink.ts): simpler than
 * rootlesskit's `--net=slirp4netns` for the whole daemon, which would need its listener
 * published through a port driver and would cut it off from the host's loopback.
 * Mounts live in rootlesskit's mount namespace (`--propagation=rprivate`), so they vanish with
 * it whatever way buildd ends.
 *
 * Lifecycle: resolves with the child's exit code once it has exited; SIGTERM and SIGINT are
 * passed on to it (rootlesskit forwards them to buildd), and should this process be killed,
 * buildd sees its stdin end and shuts down. rootlesskit's state dir is a temp dir that
 * rootlesskit removes as it exits (and this process too, in case it did not).
 */
export async function runUnderRootlesskit(nodeArgs: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootlesskit-'));
  // rootlesskit wants to create it itself
  await fsp.rmdir(stateDir);
  try {
    const child = spawn('rootlesskit', ['--net=host', '--propagation=rprivate', `--state-dir=${stateDir}`, '--', process.execPath, ...nodeArgs], {
      // stdin: the lifeline (see parent-lifeline.ts); ends when this process does, however it ends
      stdio: ['pipe', 'inherit', 'inherit'],
      env: { ...env, [CHILD_ENV]: '1' },
    });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    process.on('SIGTERM', forward);
    process.on('SIGINT', forward);
    try {
      return await new Promise<number>((resolve, reject) => {
        child.on('error', (err: NodeJS.ErrnoException) =>
          reject(
            new BuildError(
              'failed-precondition',
              err.code === 'ENOENT' ? 'Cannot start buildd --rootless: rootlesskit is not installed (Debian package rootlesskit)' : `Cannot start rootlesskit: ${err.message}`,
            ),
          ),
        );
        child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)));
      });
    } finally {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
    }
  } finally {
    await fsp.rm(stateDir, { recursive: true, force: true });
  }
}

/** Set in the environment of the buildd that rootlesskit starts: it must not re-execute again. */
export const CHILD_ENV = 'BUILDD_ROOTLESS_CHILD';
