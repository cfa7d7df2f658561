import type { Logger } from 'pino';
import type { CacheManager } from './cache-manager';
import type { PruneOptions } from './prune-plan';

/**
 * The daemon's automatic GC: runs the policy's rules in order (each a prune) `delayMs` after
 * it is asked (after each build, once at start), as BuildKit throttles its GC to once a minute
 * after builds: a burst of builds makes one run, and a build's own end is never slowed by
 * measuring the cache. One run at a time; asks that come during a run make one more run after
 * it, not one each. A failed run is logged, never a build's failure.
 *
 * Lifecycle: one per daemon; `idle()` resolves once no run is going or pending (tests);
 * `stop()` drops a pending run and waits for the current one.
 */
export class GcRunner {
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly manager: CacheManager,
    private readonly rules: readonly PruneOptions[],
    private readonly log: Logger,
    private readonly delayMs: number,
    /** told after each run how many bytes it freed (metrics) */
    private readonly ran?: (freedBytes: number) => void,
  ) {}

  request(): void {
    if (this.rules.length === 0 || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.loop().finally(() => {
        this.running = undefined;
      });
    }, this.delayMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        let removed = 0;
        let freed = 0;
        for (const rule of this.rules) {
          const result = await this.manager.prune(rule);
          removed += result.removed.length;
          freed += result.blobBytes + result.removed.reduce((n, r) => n + r.size, 0);
        }
        if (removed > 0) this.log.debug({ removed, freed }, 'gc run done');
        this.ran?.(freed);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'gc run failed');
      }
    } while (this.again && !this.stopped);
  }
}
