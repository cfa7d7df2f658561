import { runHostCommand } from '../../store/host-command';

/** How a short runc command (kill, delete, list) ended. */
export interface RuncCommandResult {
  /** null when runc itself could not be started or was killed */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a short-lived runc command to completion through the host command helper (a fork of the
 * daemon blocks its main thread: see store/host-command.ts) and collects its (capped) output.
 * Never rejects: callers decide whether a failure matters (a `kill` of a container that is
 * already gone does not).
 */
export async function runRuncCommand(binary: string, args: readonly string[]): Promise<RuncCommandResult> {
  const res = await runHostCommand(binary, args);
  return { code: res.error !== undefined ? null : res.code, stdout: res.stdout, stderr: res.stderr + (res.error ?? '') };
}
