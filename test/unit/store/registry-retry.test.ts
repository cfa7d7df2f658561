import { BuildError } from '../../../solver/build-error';
import { isTransient, withRetries } from '../../../store/registry-retry';

describe('retries of registry operations', () => {
  test('transient: unreachable, 5xx/429 (unavailable), a broken stream; final: refusals, mismatches, cancellation', () => {
    expect(isTransient(new BuildError('unavailable', 'x'))).toBe(true);
    expect(isTransient(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }))).toBe(true);
    for (const code of ['invalid-argument', 'not-found', 'unauthenticated', 'permission-denied', 'cancelled'] as const) {
      expect(isTransient(new BuildError(code, 'x'))).toBe(false);
    }
    expect(isTransient(Object.assign(new Error('aborted'), { name: 'AbortError' }))).toBe(false);
    expect(isTransient('a string')).toBe(false);
  });

  test('three attempts at most; a final error is not retried; the last error is what comes out', async () => {
    let calls = 0;
    const retried: number[] = [];
    await expect(withRetries(async () => {
      calls++;
      throw new BuildError('unavailable', `attempt ${calls}`);
    }, undefined, (_err, next) => retried.push(next))).rejects.toThrow('attempt 3');
    expect([calls, retried]).toEqual([3, [2, 3]]);
    calls = 0;
    await expect(withRetries(async () => {
      calls++;
      throw new BuildError('not-found', 'gone');
    })).rejects.toThrow('gone');
    expect(calls).toBe(1);
    calls = 0;
    expect(await withRetries(async () => {
      calls++;
      if (calls < 2) throw new BuildError('unavailable', 'once');
      return 'ok';
    })).toBe('ok');
  });

  test('a cancelled operation stops waiting and says why it failed', async () => {
    const abort = new AbortController();
    let calls = 0;
    const p = withRetries(async () => {
      calls++;
      abort.abort();
      throw new BuildError('unavailable', 'dropped');
    }, abort.signal);
    await expect(p).rejects.toThrow('dropped');
    expect(calls).toBe(1);
  });
});
