import { spawn } from 'node:child_process';
import { captureCappedOutput } from './capped-output';

/**
 * Whether a RUN step of the 'sandbox' process mode can have its /proc: does what runc does for
 * it (a new PID and mount namespace, procfs mounted on /proc) with util-linux's unshare, once
 * at start. A rootless daemon in a container whose /proc the runtime masked is refused by the
 * kernel here, and every RUN step would fail the same way; the start says so, with what to do.
 *
 * Resolves with the reason when the mount is refused; undefined when it works or cannot be
 * tried (no unshare: the steps' own error will tell).
 */
export function probeStepProc(unshare = 'unshare'): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(unshare, ['--pid', '--fork', '--mount', '--mount-proc', 'true'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const out = captureCappedOutput(child);
    child.once('error', () => resolve(undefined));
    child.once('close', (code) => resolve(code === 0 ? undefined : out.stderr().trim() || `unshare exited with ${code}`));
  });
}
