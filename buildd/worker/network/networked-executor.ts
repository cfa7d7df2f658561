import { randomBytes } from 'node:crypto';
import { BuildError } from '../../../solver/build-error';
import type { ExecRequest, ExecResult, Executor } from '../executor';
import type { NetworkSandboxes } from './cni-sandboxes';

/**
 * An Executor that gives every RUN with network `sandbox` its own CNI-attached namespace:
 * it acquires the sandbox, runs the step in it through the wrapped executor (which joins it
 * via `netnsPath`), and releases it once the container is deleted, on success, failure and
 * cancel alike. Steps with network `none` (loopback only) and `host` (the daemon's own
 * namespace, no CNI) pass through unchanged.
 *
 * Lifecycle: as `Executor`; `close()` closes the wrapped executor, waits for every sandbox
 * still held to be released, then closes the sandboxes (their pool).
 */
export class NetworkedExecutor implements Executor {
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly inner: Executor,
    private readonly sandboxes: NetworkSandboxes,
  ) {}

  run(req: ExecRequest): Promise<ExecResult> {
    if (req.network !== 'sandbox' || req.netnsPath !== undefined) return this.inner.run(req);
    if (this.closed) return Promise.reject(new BuildError('unavailable', 'Cannot run a container: the executor is closed'));
    const run = this.runInSandbox(req);
    const tracked = run.catch(() => undefined);
    this.inFlight.add(tracked);
    void tracked.then(() => this.inFlight.delete(tracked));
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inner.close();
    await Promise.all([...this.inFlight]);
    await this.sandboxes.close();
  }

  private async runInSandbox(req: ExecRequest): Promise<ExecResult> {
    // the CNI container id is the runc container id, so that logs and leases name the same thing
    const id = req.id ?? `buildd-${randomBytes(12).toString('hex')}`;
    const step = JSON.stringify(req.args);
    if (req.signal?.aborted) throw new BuildError('cancelled', `Cannot run ${step}: the step was cancelled`);
    // not interrupted by a cancel: a half-done ADD is harder to undo than a finished one,
    // and the inner run() sees the abort at once
    const sandbox = await this.sandboxes.acquire(id, step);
    try {
      return await this.inner.run({ ...req, id, netnsPath: sandbox.netnsPath });
    } finally {
      await sandbox.release();
    }
  }
}
