import type { ChildProcess } from 'node:child_process';

/** Bytes kept of each stream of a short helper process: their answers are small, a runaway's are not. */
export const MAX_OUTPUT_BYTES = 64 * 1024;

/** What a helper process wrote, each stream cut at {@link MAX_OUTPUT_BYTES}. */
export interface CappedOutput {
  stdout(): string;
  stderr(): string;
}

/**
 * Collects a spawned child's stdout and stderr as text, keeping at most `max` bytes of each. Lifecycle: call right after spawn, read once the child has closed.
 */
export function captureCappedOutput(child: ChildProcess, max = MAX_OUTPUT_BYTES): CappedOutput {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    if (stdout.length < max) stdout += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < max) stderr += chunk.toString('utf8');
  });
  return { stdout: () => stdout, stderr: () => stderr };
}
