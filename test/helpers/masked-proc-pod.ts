import type { ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { waitFor } from './wait-for';

/**
 * What containerd does to a container's /proc and /sys unless told otherwise (Kubernetes
 * without `procMount: Unmasked`, Docker without `systempaths=unconfined`): /dev/null over
 * files, an empty read-only tmpfs over directories, read-only binds of the kernel knobs. Each
 * only where the kernel has it. In a mount namespace of its own, as root.
 */
const MASK_SCRIPT = [
  'set -e',
  'for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/latency_stats /proc/timer_stats; do if [ -e "$f" ]; then mount --bind /dev/null "$f"; fi; done',
  'for d in /proc/acpi /proc/scsi /sys/firmware /sys/devices/virtual/powercap; do if [ -d "$d" ]; then mount -t tmpfs -o ro,size=0 tmpfs "$d"; fi; done',
  'for p in /proc/asound /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do if [ -e "$p" ]; then mount --bind "$p" "$p" && mount -o remount,bind,ro "$p"; fi; done',
  'exec "$@"',
].join('\n');

/**
 * A stand-in for a Kubernetes pod without a user namespace of its own: new mount and PID
 * namespaces (a procfs of their own, as the runtime mounts one), containerd's masks applied,
 * then `argv` (a setpriv command line: the pod's user) as the namespace's init, as a pod's
 * entrypoint is. util-linux's unshare blocks SIGTERM and waits; `--kill-child` ends the pod
 * should the test's process die.
 */
export const maskedProcPod = {
  command(argv: readonly string[]): [string, string[]] {
    return ['unshare', ['--mount', '--pid', '--fork', '--mount-proc', '--kill-child', '--', '/bin/sh', '-c', MASK_SCRIPT, 'masked-pod', ...argv]];
  },

  /** SIGTERM to the pod's init (buildd): unshare itself does not pass it on. */
  async terminate(unshare: ChildProcess): Promise<void> {
    const init = await podInit(unshare);
    if (init !== undefined) process.kill(init, 'SIGTERM');
  },
};

/** The host pid of the pod's init: unshare's one child. */
export async function podInit(unshare: ChildProcess): Promise<number | undefined> {
  const pid = unshare.pid;
  if (pid === undefined || unshare.exitCode !== null) return undefined;
  return waitFor('the pod init', async () => {
    const children = await fsp.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    const first = children.trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  }, 10_000);
}

/** Host pids of the live (not zombie) processes of the PID namespace `nsOf` is in whose argv is `argv`. */
export async function processesRunning(nsOf: number, argv: readonly string[]): Promise<number[]> {
  const ns = await fsp.readlink(`/proc/${nsOf}/ns/pid`);
  const want = argv.join('\0') + '\0';
  const found: number[] = [];
  for (const e of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const [theirs, cmdline, stat] = await Promise.all([
      fsp.readlink(`/proc/${e}/ns/pid`).catch(() => ''),
      fsp.readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => ''),
      fsp.readFile(`/proc/${e}/stat`, 'utf8').catch(() => ''),
    ]);
    // the state follows the command's closing parenthesis; a zombie has exited
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (theirs === ns && cmdline === want && state !== 'Z' && state !== '') found.push(Number(e));
  }
  return found;
}
