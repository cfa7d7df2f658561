import { setTimeout as delay } from 'node:timers/promises';
import { BuildError } from '../solver/build-error';

/** Waits before the second and third attempts: short, as a registry that drops one upload usually takes the next. */
export const RETRY_DELAYS_MS: readonly number[] = [250, 1000];

/**
 * Whether a registry operation failed for a reason another attempt may cure: the registry was
 * unreachable, dropped the connection, answered 5xx or 429 (`unavailable`), or a body stream
 * broke off (an error that is not one of ours). Refusals (4xx), digest mismatches and
 * cancellation are final.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof BuildError) return err.code === 'unavailable';
  if (!(err instanceof Error)) return false;
  return err.name !== 'AbortError';
}

/**
 * Runs `attempt` until it succeeds, fails for good, or has failed transiently once more than
 * RETRY_DELAYS_MS has delays for; waits those delays in between (cut short by `signal`).
 * `onRetry` hears of each failure that is retried. The last failure is what the caller sees.
 */
export async function withRetries<T>(attempt: () => Promise<T>, signal?: AbortSignal, onRetry?: (err: unknown, next: number) => void): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      const wait = RETRY_DELAYS_MS[i];
      if (wait === undefined || signal?.aborted || !isTransient(err)) throw err;
      onRetry?.(err, i + 2);
      await delay(wait, undefined, { signal }).catch(() => {
        throw err;
      });
    }
  }
}
