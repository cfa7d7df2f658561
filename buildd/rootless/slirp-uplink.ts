import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { Uplink } from '../worker/network/cni-sandboxes';
import { createNetns, removeNetns } from '../worker/network/netns';

/** The device slirp4netns needs: a tap in the bridge's namespace, the host's sockets behind it. */
export const TUN_DEVICE = '/dev/net/tun';

/** What `openSlirpUplink` gives: the uplink, or exactly why rootless networking is off. */
export type SlirpUplinkOutcome = { uplink: Uplink } | { off: string };

/**
 * Why rootless buildd cannot open the tun device read-write, or undefined when it can. Most
 * distributions ship it 0666; some (the test machines) 0600 root, which an unprivileged user
 * (and so the root of its user namespace) cannot open.
 */
export async function tunProblem(device = TUN_DEVICE): Promise<string | undefined> {
  try {
    const fh = await fsp.open(device, fsConstants.O_RDWR);
    await fh.close();
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return `${device} does not exist (load the tun module: modprobe tun)`;
    const st = await fsp.stat(device).catch(() => undefined);
    const mode = st ? ` (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, owner uid ${st.uid})` : '';
    return `${device} cannot be opened read-write by this user: ${e.code ?? e.message}${mode}; as root: chmod 0666 ${device}`;
  }
}

/**
 * The namespace rootless buildd keeps its CNI bridge in, connected out by slirp4netns: a
 * fresh network namespace (a file under `stateDir`, owned by buildd's user namespace, where
 * buildd is root and has CAP_NET_ADMIN, so the bridge, veths and iptables masquerading work as
 * in root mode) with a tap whose traffic slirp4netns turns into ordinary sockets of the user on
 * the host. The daemon itself stays in the host's namespace (rootlesskit --net=host), so its
 * listener and its pulls are unchanged; only RUN steps go through the uplink.
 *
 * `--disable-host-loopback` (as BuildKit's rootless setup): a step cannot reach the host's
 * 127.0.0.1 through 10.0.2.2, where the daemon's own and other local services listen.
 *
 * Lifecycle: opened once at daemon start, before the CNI sandboxes; `close()` after the last
 * sandbox is gone stops slirp4netns and removes the namespace. Should buildd die by kill -9,
 * slirp4netns sees its exit fd close and exits, and the namespace goes with rootlesskit's
 * mount namespace; the next start removes the leftover file.
 *
 * Never rejects: what makes networking impossible is returned as `off`, for the caller to log
 * while steps keep loopback only.
 */
export async function openSlirpUplink(stateDir: string, tunDevice = TUN_DEVICE): Promise<SlirpUplinkOutcome> {
  const tun = await tunProblem(tunDevice);
  if (tun !== undefined) return { off: tun };
  const netnsPath = path.join(stateDir, 'uplink-ns');
  try {
    await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
    // a killed daemon's: its namespace died with its mount namespace, the file stayed
    await removeNetns(netnsPath);
    await createNetns(netnsPath);
  } catch (err) {
    return { off: `cannot make the bridge's network namespace: ${(err as Error).message}` };
  }
  const started = await startSlirp(netnsPath);
  if ('off' in started) {
    await removeNetns(netnsPath).catch(() => undefined);
    return started;
  }
  const child = started.child;
  let closing: Promise<void> | undefined;
  return {
    uplink: {
      netnsPath,
      close: () =>
        (closing ??= (async () => {
          if (child.exitCode === null && child.signalCode === null) {
            const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
            child.kill('SIGTERM');
            await exited;
          }
          await removeNetns(netnsPath);
        })()),
    },
  };
}

/** Starts slirp4netns on the namespace file and waits until it configured tap0 (or failed). */
async function startSlirp(netnsPath: string): Promise<{ child: ChildProcess } | { off: string }> {
  const child = spawn(
    'slirp4netns',
    // fd 3: exit fd (closes when buildd goes, however it goes); fd 4: ready fd
    ['--configure', '--mtu=65520', '--disable-host-loopback', '--netns-type=path', '--exit-fd=3', '--ready-fd=4', netnsPath, 'tap0'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
  // buildd never writes the exit fd (it only has to stay open while buildd lives); an error on
  // it must not crash the daemon
  child.stdio[3]?.on('error', () => undefined);
  const readyFd = child.stdio[4] as Readable | null;
  const outcome = await new Promise<{ ok: true } | { off: string }>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      resolve({ off: err.code === 'ENOENT' ? 'slirp4netns is not installed (Debian package slirp4netns)' : `cannot start slirp4netns: ${err.message}` }),
    );
    child.once('exit', (code, sig) => resolve({ off: `slirp4netns exited (${code ?? sig}) before the network was up: ${stderr.trim()}` }));
    readyFd?.once('data', () => resolve({ ok: true }));
  });
  readyFd?.destroy();
  if ('off' in outcome) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return outcome;
  }
  return { child };
}
