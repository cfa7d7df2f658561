import { BuildError } from '../../../solver/build-error';
import { parseDockerfile } from '../../../frontend/parse-dockerfile';
import { BUSYBOX, build, fakeResolver } from './fake-resolver';

/** The parser's two passes: lines (directives, continuations, heredocs), then instructions. */
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
    expect(() => parseDockerfile('FROM x\n\nCMD [1, 2]\n', 'Dockerfile')).toThrow('Dockerfile:3:1: when using JSON array syntax, arrays must be comprised of strings only');
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
    // Keys are expanded (unquoted) by the dispatcher, like values.
    expect(label).toMatchObject({ pairs: [{ key: '"a b"', value: "'c'" }] });
  });

  test.each([
    ['FROM x\nCOPPY a b\n', 'Dockerfile:2:1: unknown instruction COPPY: did you mean COPY?\n 2 | COPPY a b'],
    ['FROM x\nRUNN true\n', 'Dockerfile:2:1: unknown instruction RUNN: did you mean RUN?\n 2 | RUNN true'],
    ['FROM x\nCOPY --chmode=755 a /a\n', 'Dockerfile:2:6: unknown flag --chmode for COPY: did you mean --chmod?\n 2 | COPY --chmode=755 a /a'],
    ['FROM x\nCOPY --frm=x a /a\n', 'Dockerfile:2:6: unknown flag --frm for COPY: did you mean --from?\n 2 | COPY --frm=x a /a'],
    ['FROM x\nWORKDIR --x /a\n', 'Dockerfile:2:9: unknown flag --x for WORKDIR (WORKDIR takes no flags)\n 2 | WORKDIR --x /a'],
    ['FROM x\nCOPY --from a /a\n', 'Dockerfile:2:6: missing a value on flag: --from (write --from=VALUE)\n 2 | COPY --from a /a'],
    ['FROM x\nCOPY --link=maybe a /a\n', 'Dockerfile:2:6: expecting boolean value for flag --link, not: maybe\n 2 | COPY --link=maybe a /a'],
    ['FROM x\nRUN --mount=type=cahce,target=/c true\n', 'Dockerfile:2:1: invalid --mount=type=cahce,target=/c: unsupported mount type "cahce": did you mean cache?\n 2 | RUN --mount=type=cahce,target=/c true'],
    ['FROM x\nRUN --mount=type=cache,targt=/c true\n', "Dockerfile:2:1: invalid --mount=type=cache,targt=/c: unexpected key 'targt' in 'targt=/c': did you mean target?\n 2 | RUN --mount=type=cache,targt=/c true"],
    ['FROM x\nRUN --mount=type=cache,target=/c,sharing=all true\n', 'Dockerfile:2:1: invalid --mount=type=cache,target=/c,sharing=all: unsupported sharing value "all" (shared, private or locked)\n 2 | RUN --mount=type=cache,target=/c,sharing=all true'],
    ['FROM x\nRUN --mount=type=tmpfs,target=/t,uid=1 true\n', 'Dockerfile:2:1: invalid --mount=type=tmpfs,target=/t,uid=1: option "uid" is not valid for mount type=tmpfs\n 2 | RUN --mount=type=tmpfs,target=/t,uid=1 true'],
    ['FROM x\nRUN --network=bridge true\n', 'Dockerfile:2:1: unsupported network mode "bridge" for RUN --network (default, none or host)\n 2 | RUN --network=bridge true'],
    ['FROM x\nRUN --security=privileged true\n', 'Dockerfile:2:1: unsupported security mode "privileged" for RUN --security (sandbox or insecure)\n 2 | RUN --security=privileged true'],
    ['RUN true\nFROM x\n', 'Dockerfile:1:1: RUN is not allowed before the first FROM: no build stage in current context\n 1 | RUN true'],
    ['FROM x y\n', 'Dockerfile:1:1: FROM requires either one or three arguments: FROM image [AS name]\n 1 | FROM x y'],
    ['FROM x AS 1a\n', 'Dockerfile:1:1: invalid name for build stage: "1a", name can\'t start with a number or contain symbols\n 1 | FROM x AS 1a'],
    ['FROM x AS a\nFROM y AS a\n', 'Dockerfile:2:1: duplicate stage name "a": each stage needs its own name\n 2 | FROM y AS a'],
    ['FROM x\nCOPY a\n', 'Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined.\n 2 | COPY a'],
    ['FROM x\nENV A\n', 'Dockerfile:2:1: ENV must have two arguments\n 2 | ENV A'],
    ['FROM x\nENV A=1 B\n', 'Dockerfile:2:1: Syntax error - can\'t find = in "B". Must be of the form: name=value\n 2 | ENV A=1 B'],
    ['FROM x\nSHELL /bin/bash -c\n', 'Dockerfile:2:1: SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]\n 2 | SHELL /bin/bash -c'],
    ['FROM x\nONBUILD ONBUILD RUN x\n', 'Dockerfile:2:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed\n 2 | ONBUILD ONBUILD RUN x'],
    ['FROM x\nONBUILD FROM y\n', 'Dockerfile:2:1: FROM isn\'t allowed as an ONBUILD trigger\n 2 | ONBUILD FROM y'],
    ['FROM x\nONBUILD MAINTAINER me\n', 'Dockerfile:2:1: MAINTAINER isn\'t allowed as an ONBUILD trigger\n 2 | ONBUILD MAINTAINER me'],
    ['FROM x\nHEALTHCHECK --intervall=1s CMD true\n', 'Dockerfile:2:13: unknown flag --intervall for HEALTHCHECK: did you mean --interval?\n 2 | HEALTHCHECK --intervall=1s CMD true'],
    ['FROM x\nHEALTHCHECK NONE x\n', 'Dockerfile:2:1: HEALTHCHECK NONE takes no arguments\n 2 | HEALTHCHECK NONE x'],
    ['FROM x\nRUN <<EOF\necho hi\n', 'Dockerfile:2:1: unterminated heredoc: no line "EOF" ends it\n 2 | RUN <<EOF\n 3 | echo hi'],
    ['# escape=x\nFROM x\n', "Dockerfile:1:1: invalid escape token 'x' does not match ` or \\\n 1 | # escape=x"],
    ['# escape=`\n# escape=\\\nFROM x\n', 'Dockerfile:2:1: only one escape parser directive can be used\n 2 | # escape=\\'],
    ['FROM x\nCOPY a \\\n  b \\\n  c\n', 'Dockerfile:2:1: When using COPY with more than one source file, the destination must be a directory and end with a /\n 2 | COPY a \\\n 3 |   b \\\n 4 |   c'],
  ])('rejects %j', async (text, message) => {
    let caught: unknown;
    try {
      await build(text, { resolveImage: fakeResolver({ x: BUSYBOX, y: BUSYBOX }) });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BuildError);
    const err = caught as BuildError;
    expect(err.code).toBe('invalid-argument');
    expect(err.message).toBe(message);
    expect(err.range).toMatchObject({ file: 'Dockerfile', startLine: Number(/:(\d+):/.exec(message)?.[1]) });
  });
});
