import { setTimeout as delay } from 'node:timers/promises';

/**
 * Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`.
 * The short pause between polls is not a wait for an event: the deadline bounds the whole.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`Cannot wait for ${what}: not ready after ${timeoutMs} ms${last instanceof Error ? ` (${last.message})` : ''}`);
    }
    await delay(25);
  }
}
