import { ProgressState } from '../../../buildctl/progress-state';

describe('progress state', () => {
  test('an unfinished line is capped: a step printing no newline does not grow memory', () => {
    const state = new ProgressState();
    state.apply({ type: 'vertex', digest: 'v', name: '[1/1] RUN spin', started: 1, cached: false }, 1);
    for (let i = 0; i < 100; i++) state.apply({ type: 'log', vertex: 'v', stream: 1, data: Buffer.alloc(64 * 1024, 'x') }, 2);
    const { newLines } = state.apply({ type: 'log', vertex: 'v', stream: 1, data: Buffer.from('end\n') }, 3);
    expect(newLines).toHaveLength(1);
    expect(newLines[0].length).toBeLessThanOrEqual(8 * 1024 + 4);
    expect(newLines[0].endsWith('xend')).toBe(true);
  });
});
