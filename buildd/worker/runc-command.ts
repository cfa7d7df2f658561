import { spawn } from 'node:child_process';

/** How a short runc command (kill, delete, list) ended. */
export interface RuncCommandResult {
  /** null when runc itself could not be started or was killed */
  code: number | null;
  stdout: string;
  stderr: string;
}

const MAX_OUTPUT_BYTES = 64 * 1024;

/**
 * Runs a short-lived runc command to completion and collects its (capped) output. Never
 * rejects: callers decide whether a failure matters (a `kill` of a container that is already
 * gone does not).
 */
export function runRuncCommand(binary: string, args: readonly string[]): Promise<RuncCommandResult> {
  return new Promise((resolve) => {
    const child = spawn(binary, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT_BYTES) stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT_BYTES) stderr += chunk.toString('utf8');
    });
    child.once('error', (err) => resolve({ code: null, stdout, stderr: stderr + err.message }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
