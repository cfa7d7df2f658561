import { BuildError } from '../../../solver/build-error';
import { parseDockerfile } from '../../../frontend/parse-dockerfile';

/** These tests pin what we rely on dockerfile-ast for, so an upgrade that changes it shows. */
describe('parseDockerfile', () => {
  test('joins continuation lines the way BuildKit does and keeps the line range', () => {
    const p = parseDockerfile('FROM x\nRUN echo a \\\n# a comment\n  b\n', 'Dockerfile');
    const run = p.stages[0].instructions[0];
    expect(run).toMatchObject({ kind: 'RUN', at: { startLine: 2, endLine: 4 }, command: { form: 'shell', text: 'echo a   b' } });
  });

  test('reads the escape directive', () => {
    const p = parseDockerfile('# escape=`\nFROM x\nRUN echo a `\n  b\n', 'Dockerfile');
    expect(p.escape).toBe('`');
    expect(p.stages[0].instructions[0]).toMatchObject({ command: { form: 'shell', text: 'echo a   b' } });
  });

  test('exec form decodes JSON escapes; text that is not a JSON array is shell form', () => {
    const p = parseDockerfile('FROM x\nCMD ["a\\"b", "\\u0041"]\nRUN [ -f /x ] && echo y\nCMD ["x"\nRUN [ "bad", ]\n', 'Dockerfile');
    const [cmd, run, cmd2, run2] = p.stages[0].instructions;
    expect(cmd).toMatchObject({ command: { form: 'exec', args: ['a"b', 'A'] } });
    expect(run).toMatchObject({ command: { form: 'shell', text: '[ -f /x ] && echo y' } });
    expect(cmd2).toMatchObject({ command: { form: 'shell', text: '["x"' } });
    expect(run2).toMatchObject({ command: { form: 'shell', text: '[ "bad", ]' } });
  });

  test('a JSON array of non-strings is an error with the line', () => {
    expect(() => parseDockerfile('FROM x\n\nCMD [1, 2]\n', 'Dockerfile')).toThrow('Dockerfile:3: when using JSON array syntax, arrays must be comprised of strings only');
  });

  test('groups instructions into stages with lowercased names and keeps global ARGs apart', () => {
    const p = parseDockerfile('ARG A=1 B\nFROM $A as Build\nRUN x\nfrom scratch\n', 'Dockerfile');
    expect(p.globalArgs[0].args).toEqual([{ key: 'A', value: '1' }, { key: 'B' }]);
    expect(p.stages.map((s) => [s.baseName, s.name, s.instructions.length])).toEqual([['$A', 'build', 1], ['scratch', undefined, 0]]);
  });

  test('ENV and LABEL keep quotes for the expander, legacy ENV takes the rest of the line', () => {
    const p = parseDockerfile('FROM x\nENV A="x y" B=c\\ d\nENV LEG some  value\nLABEL "a b"=\'c\'\n', 'Dockerfile');
    const [env, legacy, label] = p.stages[0].instructions;
    expect(env).toMatchObject({ pairs: [{ key: 'A', value: '"x y"' }, { key: 'B', value: 'c\\ d' }] });
    expect(legacy).toMatchObject({ pairs: [{ key: 'LEG', value: 'some  value' }] });
    // dockerfile-ast already unquotes keys (values it leaves to us).
    expect(label).toMatchObject({ pairs: [{ key: 'a b', value: "'c'" }] });
  });

  test.each([
    ['FROM x\nCOPPY a b\n', 'Dockerfile:2: unknown instruction: COPPY'],
    ['FROM x\nCOPY --frm=x a /a\n', 'Dockerfile:2: unknown flag: --frm'],
    ['FROM x\nRUN --mount=type=cache,target=/c true\n', 'Dockerfile:2: unknown flag: --mount'],
    ['FROM x\nWORKDIR --x /a\n', 'Dockerfile:2: unknown flag: --x'],
    ['FROM --platform=linux/arm64 x\n', 'Dockerfile:1: unknown flag: --platform'],
    ['FROM x\nADD a /a\n', 'Dockerfile:2: ADD is not supported by buildd yet'],
    ['FROM x\nVOLUME /v\n', 'Dockerfile:2: VOLUME is not supported by buildd yet'],
    ['RUN true\nFROM x\n', 'Dockerfile:1: no build stage in current context'],
    ['FROM x y\n', 'Dockerfile:1: FROM requires either one or three arguments'],
    ['FROM x AS 1a\n', 'Dockerfile:1: invalid name for build stage'],
    ['FROM x\nCOPY a\n', 'Dockerfile:2: COPY requires at least two arguments'],
    ['FROM x\nENV A\n', 'Dockerfile:2: ENV must have two arguments'],
  ])('rejects %j', (text, message) => {
    let caught: unknown;
    try {
      parseDockerfile(text, 'Dockerfile');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BuildError);
    const err = caught as BuildError;
    expect(err.code).toBe('invalid-argument');
    expect(err.message.startsWith(message)).toBe(true);
    expect(err.range).toMatchObject({ file: 'Dockerfile', startLine: Number(/:(\d+):/.exec(message)?.[1]) });
  });
});
