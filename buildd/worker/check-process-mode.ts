import type { Logger } from 'pino';
import type { DaemonConfig } from '../config';
import { probeStepProc } from './proc-mount-probe';
import { MASKED_PROC_HINT, type ProcessMode } from './process-mode';

/** BuildKit's warning (its name NoProcessSandbox first, so an operator who knows it recognises it), in buildd's terms. */
export const NO_PROCESS_SANDBOX_WARNING =
  "NoProcessSandbox is enabled (--oci-worker-no-process-sandbox): RUN steps share buildd's PID namespace and /proc, so they can see, kill (and potentially ptrace) any process of the daemon's container; enable it only when buildd runs alone in a container as an unprivileged user";

/**
 * The steps' process mode, said at start: the warning of 'no-sandbox'; for a rootless daemon
 * in 'sandbox' mode, whether its steps can get a /proc at all (probeStepProc), and if not, the
 * flag that makes them run. A root daemon is not probed: outside a user namespace the kernel
 * lets it mount procfs under masks.
 */
export async function checkProcessMode(config: Pick<DaemonConfig, 'rootless' | 'noProcessSandbox'>, logger: Logger, probe: () => Promise<string | undefined> = probeStepProc): Promise<ProcessMode> {
  if (config.noProcessSandbox) {
    logger.warn(NO_PROCESS_SANDBOX_WARNING);
    return 'no-sandbox';
  }
  if (config.rootless) {
    const refused = await probe();
    if (refused !== undefined) logger.warn({ reason: refused }, `rootless: RUN steps will fail: ${MASKED_PROC_HINT} (${refused})`);
  }
  return 'sandbox';
}
