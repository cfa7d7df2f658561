import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * The processes of one RUN container that has no PID namespace of its own ('no-sandbox'
 * process mode). Under a PID namespace the kernel kills everything in it with its init; here a
 * step's `sleep 1000 &` outlives the step, holds its output pipes open (so the step never ends)
 * and runs on in the daemon's namespace. runc cannot help without a cgroup (rootless in a pod
 * has none): `runc kill` and `runc delete` reach the init only. BuildKit leaves them running
 * (its docs/rootless.md says so); buildd finds and kills them.
 *
 * How they are found, whatever they did to their session, process group or parent (reparented
 * orphans): runc gives every container a mount namespace of its own, and a step cannot leave it
 * (unshare needs CAP_SYS_ADMIN, which a step lacks but with --security=insecure). So a process
 * belongs to the container when its mount namespace is one whose mount table has the bind mount
 * of this container's `/etc/hosts`, a file of the bundle named for the container id
 * (`<stateDir>/<id>/hosts`). The daemon's own mount namespace is skipped without reading it.
 */
export interface StepProcessesOptions {
  /** the procfs to read (a test points it elsewhere); /proc by default */
  procDir?: string;
}

/** Pids of the processes in the mount namespace of container `id`; none when it has none left. */
export async function findStepProcesses(id: string, opts: StepProcessesOptions = {}): Promise<number[]> {
  const proc = opts.procDir ?? '/proc';
  const own = await fsp.readlink(path.join(proc, 'self', 'ns', 'mnt')).catch(() => undefined);
  const byNamespace = new Map<string, number[]>();
  for (const entry of await fsp.readdir(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    // gone, a zombie (no namespaces left) or not ours to inspect: not a process of the step
    const ns = await fsp.readlink(path.join(proc, entry, 'ns', 'mnt')).catch(() => undefined);
    if (ns === undefined || ns === own) continue;
    const pids = byNamespace.get(ns) ?? [];
    pids.push(Number(entry));
    byNamespace.set(ns, pids);
  }
  const found: number[] = [];
  for (const pids of byNamespace.values()) {
    // one mount table per namespace; the first process still there to read it answers
    for (const pid of pids) {
      const table = await fsp.readFile(path.join(proc, String(pid), 'mountinfo'), 'utf8').catch(() => undefined);
      if (table === undefined) continue;
      if (hasHostsOf(table, id)) found.push(...pids);
      break;
    }
  }
  return found.sort((a, b) => a - b);
}

/**
 * SIGKILLs the processes of container `id` until none is left or `deadlineMs` has passed (a
 * step may fork while it is being killed). Returns the pids still there at the deadline.
 * A pid may be reused between the scan and the kill; the window is the few microseconds
 * between two system calls, which no API of Node closes (pidfd).
 */
export async function killStepProcesses(id: string, deadlineMs: number, opts: StepProcessesOptions = {}): Promise<number[]> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const pids = await findStepProcesses(id, opts);
    if (pids.length === 0) return [];
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    if (Date.now() >= deadline) return findStepProcesses(id, opts);
    // a killed process keeps its namespaces until it is gone; give the kernel a moment
    await new Promise<void>((resolve) => setTimeout(resolve, KILL_POLL_MS));
  }
}

/** how often the killing looks again while processes are still dying */
const KILL_POLL_MS = 10;

/**
 * Resolves once the init of container `id` (its pid in `pidFile`, which `runc run --pid-file`
 * writes once the process runs) has exited, or `stop` has settled (runc is gone: nothing to
 * watch). Why: `runc run` copies the step's output through pipes of its own and exits only
 * once they end, so while a background process of the step holds them, runc's exit never
 * comes; the init's exit is when the step is over. Node has no pidfd to wait on a process that
 * is not its child, so /proc is read every `pollMs`; only steps without a PID namespace pay
 * that. The first pid read is checked to be the container's (its mount table), so that a
 * reused pid cannot keep the step running.
 */
export async function waitForInitExit(id: string, pidFile: string, stop: Promise<unknown>, pollMs: number, opts: StepProcessesOptions = {}): Promise<void> {
  const proc = opts.procDir ?? '/proc';
  let stopped = false;
  const mark = (): void => {
    stopped = true;
  };
  stop.then(mark, mark);
  let pid: number | undefined;
  while (!stopped) {
    if (pid === undefined) {
      const text = await fsp.readFile(pidFile, 'utf8').catch(() => '');
      if (/^\d+$/.test(text.trim())) {
        pid = Number(text.trim());
        const table = await fsp.readFile(path.join(proc, String(pid), 'mountinfo'), 'utf8').catch(() => '');
        if (!hasHostsOf(table, id)) return;
      }
    }
    if (pid !== undefined && !(await isRunning(path.join(proc, String(pid), 'stat')))) return;
    await Promise.race([stop, new Promise<void>((resolve) => setTimeout(resolve, pollMs).unref())]);
  }
}

/** A process that exists and is not a zombie, from its /proc/<pid>/stat. */
async function isRunning(statFile: string): Promise<boolean> {
  const stat = await fsp.readFile(statFile, 'utf8').catch(() => '');
  // the state follows the command, which is in parentheses and may hold any character
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== '' && state !== 'Z' && state !== 'X';
}

/**
 * Whether a mountinfo table has container `id`'s /etc/hosts bind mount: mount point `/etc/hosts`
 * (field 5), its root in the source file system (field 4) ending in `/<id>/hosts`, with
 * ` //deleted` after it once the bundle is gone.
 */
export function hasHostsOf(mountinfo: string, id: string): boolean {
  const suffix = `/${id}/hosts`;
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields[4] !== '/etc/hosts') continue;
    const root = fields[3] ?? '';
    if (root.endsWith(suffix) || root.endsWith(`${suffix}//deleted`)) return true;
  }
  return false;
}
