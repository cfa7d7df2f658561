import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * A long-lived process of the reference world (the registry, dockerd), started detached so
 * that it may outlive the command that started it, and recorded in a pid file so that `stop`
 * ends exactly it. Lifecycle: {@link startOwned} spawns and writes the pid file;
 * {@link stopOwned} (any later process) ends it and removes the pid file.
 */
export interface OwnedProcess {
  pid: number;
  /** Whether it has ended (its exit, or it is gone from /proc). */
  exited(): boolean;
}

/** Spawns `cmd` in a session of its own, output appended to `logFile`, its pid written to `pidFile`. */
export async function startOwned(cmd: string, args: readonly string[], logFile: string, pidFile: string): Promise<OwnedProcess> {
  const fd = openSync(logFile, 'a');
  let ended = false;
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`Cannot start ${cmd}: ${err.message}`)));
    });
    child.once('exit', () => (ended = true));
    child.unref();
    const pid = child.pid as number;
    await fsp.writeFile(pidFile, `${pid}\n`);
    return { pid, exited: () => ended || !alive(pid) };
  } finally {
    closeSync(fd);
  }
}

/** Whether `pid` runs (a zombie, exited but not yet reaped, does not). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'; // the state field follows the command's name
  } catch {
    return false;
  }
}

/**
 * Ends the process a pid file names, if it still is the one started (its program is `program`
 * and its command line mentions `marker`: a pid reused by another process is left alone):
 * SIGTERM, then SIGKILL after `graceMs`. Removes the pid file. Gives whether it stopped one.
 */
export async function stopOwned(pidFile: string, program: string, marker: string, graceMs: number): Promise<boolean> {
  const text = await fsp.readFile(pidFile, 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  const pid = Number(text.trim());
  let stopped = false;
  if (Number.isInteger(pid) && pid > 1 && alive(pid)) {
    const argv = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (path.basename(argv[0] ?? '') === program && argv.some((a) => a.includes(marker))) {
      process.kill(pid, 'SIGTERM');
      const deadline = Date.now() + graceMs;
      while (alive(pid) && Date.now() < deadline) await delay(50);
      if (alive(pid)) {
        process.kill(pid, 'SIGKILL');
        const killDeadline = Date.now() + 10_000;
        while (alive(pid) && Date.now() < killDeadline) await delay(50);
      }
      stopped = true;
    }
  }
  await fsp.rm(pidFile, { force: true });
  return stopped;
}
