import { applyThreadpoolSize, defaultThreadpoolSize } from '../../../buildd/uv-threadpool';

describe('libuv threadpool size', () => {
  test('is 16 at least, 4 per CPU above that, 64 at most', () => {
    expect([1, 2, 4, 5, 8, 16, 64].map(defaultThreadpoolSize)).toEqual([16, 16, 16, 20, 32, 64, 64]);
  });

  test("is set when the operator did not set it, and the operator's own value wins", () => {
    const env: NodeJS.ProcessEnv = {};
    expect(applyThreadpoolSize(env, 2)).toBe('16');
    expect(env['UV_THREADPOOL_SIZE']).toBe('16');
    const own: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: '3' };
    expect(applyThreadpoolSize(own, 8)).toBe('3');
    expect(own['UV_THREADPOOL_SIZE']).toBe('3');
    const empty: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: ' ' };
    expect(applyThreadpoolSize(empty, 8)).toBe('32');
  });
});
