import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

/** The Control service's full name, as a health check asks for it. */
export const CONTROL_SERVICE = 'buildd.v1.Control';

/**
 * For liveness probes: SERVING from start to exit, draining included, so that a probe never
 * restarts a daemon that is finishing its builds after SIGTERM (readiness asks for '').
 */
export const LIVENESS_SERVICE = 'liveness';

/**
 * `grpc.health.v1.Health` for every gRPC server of the daemon (grpc-health-check, the grpc-node
 * team's implementation: Check and Watch). The overall status ('') and the Control service's
 * move together: NOT_SERVING until the daemon has bound every address, SERVING while it takes
 * builds, NOT_SERVING again from the first SIGTERM on, while running builds drain.
 *
 * Lifecycle: one per daemon; `addTo` each server before it starts; `serving()` once started;
 * `draining()` when stopping (watchers are told at once). Never goes back to SERVING.
 */
export class ServingHealth {
  private readonly impl = new HealthImplementation({ '': 'NOT_SERVING', [CONTROL_SERVICE]: 'NOT_SERVING', [LIVENESS_SERVICE]: 'NOT_SERVING' });
  private drained = false;

  addTo(server: grpc.Server): void {
    this.impl.addToServer(server);
  }

  serving(): void {
    if (this.drained) return;
    this.set('SERVING');
    this.impl.setStatus(LIVENESS_SERVICE, 'SERVING');
  }

  draining(): void {
    this.drained = true;
    this.set('NOT_SERVING');
  }

  private set(status: 'SERVING' | 'NOT_SERVING'): void {
    this.impl.setStatus('', status);
    this.impl.setStatus(CONTROL_SERVICE, status);
  }
}
