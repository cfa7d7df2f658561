/**
 * A signal that aborts itself with `reason` at its `n`th check (throwIfAborted), so that a test
 * stops work at a known point of it rather than at a moment.
 */
export function abortAtCheck(n: number, reason: unknown): AbortSignal {
  const controller = new AbortController();
  const signal = controller.signal;
  const check = signal.throwIfAborted.bind(signal);
  let checks = 0;
  signal.throwIfAborted = (): void => {
    if (++checks === n) controller.abort(reason);
    check();
  };
  return signal;
}
