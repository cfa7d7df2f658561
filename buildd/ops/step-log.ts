import type { Logger } from 'pino';
import type { ProgressEvent } from '../builder';

/**
 * A step's start and end in the daemon's log (debug), its failure (info), with its vertex
 * digest and name beside the build's ref that `log` carries.
 */
export function logStep(log: Logger, ev: ProgressEvent): void {
  if (ev.type !== 'vertex') return;
  const fields = { vertex: ev.digest, step: ev.name };
  if (ev.completed === undefined) {
    if (ev.started !== undefined) log.debug(fields, 'step started');
  } else if (ev.error !== undefined) {
    log.info({ ...fields, err: ev.error }, 'step failed');
  } else {
    log.debug({ ...fields, cached: ev.cached, ms: ev.started === undefined ? 0 : ev.completed - ev.started }, 'step done');
  }
}
