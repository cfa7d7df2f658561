import { execFile, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, promises as fsp } from 'node:fs';
import { connect } from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './registry';
import { waitFor } from './wait-for';

const run = promisify(execFile);

/**
 * A real OpenSSH server (Debian's openssh-server) on a free loopback port, with its own config
 * file, host key and log in `dir`; public key login only, for the given users.
 *
 * sshd insists on its privilege separation directory, /run/sshd, which is not there unless
 * the system started sshd once; so that the test writes no host path, sshd runs in a mount
 * namespace of its own with a private tmpfs on /run holding that directory.
 *
 * Lifecycle: `startSshd` resolves once the server sends its SSH banner; `stop` sends SIGTERM
 * and waits for the exit (the caller removes `dir` with its temp dir).
 */
export interface TestSshd {
  port: number;
  /** the server's line for a known_hosts file */
  knownHostsLine: string;
  /** sshd's stderr (`-e`): why a login was refused */
  log(): Promise<string>;
  stop(): Promise<void>;
}

/** The sshd binary: absolute, as sshd requires to re-execute itself. */
export function sshdPath(): string {
  try {
    const found = execFileSync('sh', ['-c', 'command -v sshd'], { encoding: 'utf8', env: { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } }).trim();
    if (path.isAbsolute(found)) return found;
  } catch {
    // not on PATH: Debian's place
  }
  if (existsSync('/usr/sbin/sshd')) return '/usr/sbin/sshd';
  throw new Error('Cannot start sshd: not installed (scripts/install-system-deps.sh installs openssh-server)');
}

export async function startSshd(dir: string, allowUsers: string[]): Promise<TestSshd> {
  await fsp.mkdir(dir, { recursive: true });
  const hostKey = path.join(dir, 'host_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'buildd-test-host', '-f', hostKey]);
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  await fsp.writeFile(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    'PidFile none',
    'UsePAM no',
    'PubkeyAuthentication yes',
    'AuthorizedKeysFile .ssh/authorized_keys',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin no',
    `AllowUsers ${allowUsers.join(' ')}`,
    // homes live in the test's temp dir, whose parents sshd would judge too open
    'StrictModes no',
    'AllowAgentForwarding no',
    'AllowTcpForwarding no',
    'X11Forwarding no',
    'PrintMotd no',
    'PrintLastLog no',
    'LogLevel VERBOSE',
    '',
  ].join('\n'));
  const logPath = path.join(dir, 'sshd.log');
  const logFile = createWriteStream(logPath);
  await new Promise<void>((resolve, reject) => logFile.once('open', () => resolve()).once('error', reject));
  const child = spawn('unshare', [
    '--mount', '--propagation', 'private',
    'sh', '-c', 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec "$0" -D -e -f "$1"',
    sshdPath(), config,
  ], { stdio: ['ignore', logFile, logFile] });
  let exited: number | null | undefined;
  const exit = new Promise<void>((resolve) => child.once('exit', (code) => {
    exited = code;
    resolve();
  }));
  const log = (): Promise<string> => fsp.readFile(logPath, 'utf8');
  const stop = async (): Promise<void> => {
    if (exited === undefined) child.kill('SIGTERM');
    await exit;
    logFile.close();
  };
  try {
    const first = await waitFor('sshd to send its banner', async () => (exited !== undefined ? 'exited' : banner(port)));
    if (first === 'exited') throw new Error(`Cannot start sshd: it exited with ${exited}: ${await log()}`);
  } catch (err) {
    await stop();
    throw err;
  }
  const pub = (await fsp.readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  return { port, knownHostsLine: `[127.0.0.1]:${port} ${pub}\n`, log, stop };
}

/** The server's first line, or undefined while nothing listens. */
function banner(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\n')) {
        sock.destroy();
        resolve(got.startsWith('SSH-2.0-') ? got.trim() : undefined);
      }
    });
    sock.on('error', () => resolve(undefined));
    sock.on('close', () => resolve(undefined));
  });
}
