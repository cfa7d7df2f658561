import type { Readable } from 'node:stream';

/**
 * The rootless child's tie to the `buildd --rootless` process that started rootlesskit: that
 * process gives rootlesskit a pipe as stdin, which rootlesskit hands on to buildd, and writes
 * nothing to it. The pipe ends only when its writer is gone, `kill -9` included, and then
 * `onGone` runs once (buildd shuts down as on SIGTERM) instead of buildd and rootlesskit living
 * on as orphans nobody can signal by the pid they started.
 */
export function watchParentLifeline(stdin: Readable, onGone: () => void): void {
  let fired = false;
  const fire = (): void => {
    if (fired) return;
    fired = true;
    onGone();
  };
  stdin.on('end', fire);
  stdin.on('close', fire);
  stdin.on('error', fire);
  // nothing is ever written; reading keeps the stream flowing so that 'end' is seen
  stdin.resume();
}
