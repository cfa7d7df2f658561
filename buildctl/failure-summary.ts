import type { BuildError } from '../solver/build-error';
import type { ProgressState } from './progress-state';

/**
 * What a person reads when a build fails, as BuildKit prints it: the failed step's last output
 * lines in a box, then `ERROR: failed to solve: <message>` (with the exit code when the
 * message does not already say it). No stack trace.
 */
export function failureSummary(err: BuildError, state: ProgressState | undefined): string {
  let out = '';
  const v = err.vertex !== undefined ? state?.vertices.get(err.vertex) : undefined;
  if (v) {
    out += '------\n';
    out += ` > ${v.name}:\n`;
    for (const l of v.lines) out += `${((l.at - (v.started ?? l.at)) / 1000).toFixed(3)} ${l.text}\n`;
    out += '------\n';
  }
  if (err.range) out += `${err.range.file}:${err.range.startLine}${err.range.endLine !== err.range.startLine ? `-${err.range.endLine}` : ''}\n`;
  let message = err.message;
  if (err.exitCode !== undefined && !/exit code/i.test(message)) message += `: exit code: ${err.exitCode}`;
  out += `ERROR: failed to solve: ${message}\n`;
  return out;
}
