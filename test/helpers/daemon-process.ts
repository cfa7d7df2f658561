import type { ChildProcess } from 'node:child_process';
import { waitFor } from './wait-for';

/** A started buildd process, watched: its stderr so far, whether and how it exited. */
export interface WatchedDaemon {
  /** the `tcp://host:port` it logged that it listens on */
  addr: string;
  stderr(): string;
  /** SIGTERM unless it exited already, then its exit code */
  stop(): Promise<number | null>;
}

/**
 * Watches a buildd process just spawned (stderr piped) until it logs its tcp address. When it
 * exits first or the deadline passes, the process is stopped with `failSignal`, `cleanup` runs,
 * and the error says why. Lifecycle: the caller owns the process; `stop` ends it. `terminate`,
 * when given, replaces the SIGTERM to `child` (a daemon started inside a wrapper that does not
 * pass signals on, such as unshare: see masked-proc-pod.ts).
 */
export async function watchDaemon(child: ChildProcess, what: string, failSignal: NodeJS.Signals, cleanup: () => Promise<void>, terminate?: () => Promise<void>): Promise<WatchedDaemon> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve((exited = code))));
  const ready = await waitFor(`${what} to listen`, async () => {
    if (exited !== undefined) return { exited };
    const addr = /buildd listening on (tcp:\/\/[0-9.]+:\d+)/.exec(stderr)?.[1];
    return addr === undefined ? undefined : { addr };
  }).catch((err: Error) => ({ error: err }));
  if (!('addr' in ready) || ready.addr === undefined) {
    if (exited === undefined) {
      if (terminate) await terminate().catch(() => child.kill('SIGKILL'));
      else child.kill(failSignal);
    }
    await exit;
    await cleanup();
    throw 'error' in ready ? ready.error : new Error(`Cannot start ${what}: it exited with ${exited}: ${stderr}`);
  }
  return {
    addr: ready.addr,
    stderr: () => stderr,
    stop: async () => {
      if (exited === undefined) {
        if (terminate) await terminate();
        else child.kill('SIGTERM');
      }
      return exit;
    },
  };
}
