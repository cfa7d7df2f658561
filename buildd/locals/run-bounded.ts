/**
 * Runs `fn` over `items` with at most `limit` calls in flight, in order of start; the first
 * failure stops new starts and is thrown once the calls in flight have settled.
 */
export async function runBounded<T>(items: readonly T[], limit: number, signal: AbortSignal, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      if (signal.aborted) {
        failed ??= { err: signal.reason };
        return;
      }
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed.err;
}
