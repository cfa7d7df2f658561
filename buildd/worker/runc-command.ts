import { spawn } from 'node:child_process';
import { captureCappedOutput } from './capped-output';

/** How a short runc command (kill, delete, list) ended. */
export interface RuncCommandResult {
  /** null when runc itself could not be started or was killed */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a short-lived runc command to completion and collects its (capped) output. Never
 * rejects: callers decide whether a failure matters (a `kill` of a container that is already
 * gone does not).
 */
export function runRuncCommand(binary: string, args: readonly string[]): Promise<RuncCommandResult> {
  return new Promise((resolve) => {
    const child = spawn(binary, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = captureCappedOutput(child);
    child.once('error', (err) => resolve({ code: null, stdout: out.stdout(), stderr: out.stderr() + err.message }));
    child.once('close', (code) => resolve({ code, stdout: out.stdout(), stderr: out.stderr() }));
  });
}
