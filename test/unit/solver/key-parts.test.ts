import { envDigests, explainMiss, stepIdentity, type KeyParts } from '../../../solver/key-parts';

const base: KeyParts = { inputs: ['k-from'], env: envDigests(['PATH=/bin', 'VERSION=1']), command: 'c1', rest: 'r1' };

describe('explainMiss', () => {
  it('names the build arg or env entry that changed, was added or removed, never its value', () => {
    const now = { ...base, env: envDigests(['PATH=/bin', 'VERSION=2', 'NEW=x']) };
    const why = explainMiss(base, now, ['[1/2] FROM busybox']);
    expect(why).toBe('build arg or env VERSION changed; build arg or env NEW added');
    expect(why).not.toContain('2');
    expect(explainMiss(base, { ...base, env: envDigests(['PATH=/bin']) }, [])).toBe('build arg or env VERSION removed');
  });

  it('names the input that changed, the content of the paths, the command and the rest', () => {
    expect(explainMiss(base, { ...base, inputs: ['k-other'] }, ['[1/2] FROM busybox'])).toBe('its input [1/2] FROM busybox changed');
    const copy: KeyParts = { inputs: ['a', 'ctx'], contents: [{ paths: ['src', 'package.json'], checksum: 'x' }], rest: 'r' };
    expect(explainMiss(copy, { ...copy, contents: [{ paths: ['src', 'package.json'], checksum: 'y' }] }, [])).toBe('the content of src, package.json changed');
    expect(explainMiss(base, { ...base, command: 'c2' }, [])).toBe('the command changed');
    expect(explainMiss(base, { ...base, rest: 'r2' }, [])).toBe("the step's options changed");
    expect(explainMiss(base, base, [])).toBeUndefined();
  });
});

describe('stepIdentity', () => {
  it('is the Dockerfile place, the kind and what the step reads, or its own name without the counter', () => {
    const from = '[1/3] FROM busybox';
    expect(stepIdentity('exec', '[2/3] RUN make', { file: 'Dockerfile', startLine: 4 }, [from])).toBe('Dockerfile:4 exec\0FROM busybox');
    // a changed command or build arg on the same line is the same step
    expect(stepIdentity('exec', '[2/3] RUN make V=2', { file: 'Dockerfile', startLine: 4 }, [from])).toBe(stepIdentity('exec', '[2/3] RUN make', { file: 'Dockerfile', startLine: 4 }, [from]));
    // another project's step on that line, on another base, is not
    expect(stepIdentity('exec', '[2/3] RUN make', { file: 'Dockerfile', startLine: 4 }, ['[1/3] FROM alpine'])).not.toBe(stepIdentity('exec', '[2/3] RUN make', { file: 'Dockerfile', startLine: 4 }, [from]));
    expect(stepIdentity('exec', '[build 2/2] RUN make', undefined, [])).toBe('[build] RUN make exec');
  });
});
