import { BuildError } from '../../../solver/build-error';
import { ExecOp, FileOp, SourceOp } from '../../../solver/op';
import { FrontendResult } from '../../../frontend/dockerfile-frontend';
import { BUSYBOX, build, fakeResolver } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function ops<K extends 'exec' | 'file' | 'source'>(r: FrontendResult, kind: K): Array<Extract<ExecOp | FileOp | SourceOp, { kind: K }>> {
  return r.definition.ops.map((o) => o.op).filter((o): o is Extract<ExecOp | FileOp | SourceOp, { kind: K }> => o.kind === kind);
}
async function failure(df: string, extra: Parameters<typeof build>[1] = {}): Promise<string> {
  try {
    await build(df, extra);
  } catch (err) {
    expect(err).toBeInstanceOf(BuildError);
    return (err as Error).message;
  }
  throw new Error('expected the build to fail');
}

describe('config instructions (expected values read from the reference BuildKit v0.8)', () => {
  test('MAINTAINER SHELL VOLUME STOPSIGNAL HEALTHCHECK ONBUILD EXPOSE ranges ADD CMD ENTRYPOINT', async () => {
    const r = await build(`FROM ${BB}
MAINTAINER Jane <j@x>
SHELL ["/bin/sh", "-ec"]
RUN echo one
VOLUME /v1 /v2
VOLUME ["/v3"]
STOPSIGNAL SIGKILL
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD wget -q localhost || exit 1
ONBUILD RUN echo built
EXPOSE 8000-8002 53/udp
ADD a.txt /b/
ADD --chown=1:2 a.txt /c.txt
CMD echo hi
ENTRYPOINT echo x
WORKDIR rel
ENV A=1
RUN echo two
`);
    expect(r.image.author).toBe('Jane <j@x>');
    expect(r.image.config).toEqual({
      ExposedPorts: { '53/udp': {}, '8000/tcp': {}, '8001/tcp': {}, '8002/tcp': {} }, Env: [PATH, 'A=1'],
      Cmd: ['/bin/sh', '-ec', 'echo hi'], Healthcheck: { Test: ['CMD-SHELL', 'wget -q localhost || exit 1'], Interval: 30e9, Timeout: 3e9, Retries: 3 },
      ArgsEscaped: true, Volumes: { '/v1': {}, '/v2': {}, '/v3': {} }, WorkingDir: '/rel', Entrypoint: ['/bin/sh', '-ec', 'echo x'],
      OnBuild: ['RUN echo built'], StopSignal: 'SIGKILL', Shell: ['/bin/sh', '-ec'],
    });
    expect((r.image.history ?? []).slice(1).map((h) => [h.created_by, h.empty_layer === true])).toEqual([
      ['MAINTAINER Jane <j@x>', true], ['SHELL [/bin/sh -ec]', true], ['RUN /bin/sh -ec echo one # buildkit', false],
      ['VOLUME [/v1 /v2]', true], ['VOLUME [/v3]', true], ['STOPSIGNAL SIGKILL', true],
      ['HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "30s" "3s" "0s" \'\\x03\'}', true],
      ['EXPOSE map[53/udp:{} 8000/tcp:{} 8001/tcp:{} 8002/tcp:{}]', true],
      ['ADD a.txt /b/ # buildkit', false], ['ADD a.txt /c.txt # buildkit', false],
      ['CMD ["/bin/sh" "-ec" "echo hi"]', true], ['ENTRYPOINT ["/bin/sh" "-ec" "echo x"]', true],
      ['WORKDIR /rel', false], ['ENV A=1', true], ['RUN /bin/sh -ec echo two # buildkit', false],
    ]);
    const adds = ops(r, 'file').map((f) => f.actions[0]).filter((a) => a.type === 'copy');
    expect(adds).toEqual([
      { type: 'copy', src: 1, srcPaths: ['a.txt'], dest: '/b/', extract: true },
      { type: 'copy', src: 1, srcPaths: ['a.txt'], dest: '/c.txt', chown: { user: '1', group: '2' }, extract: true },
    ]);
    expect(r.warnings.map((w) => w.message.split(':')[0])).toEqual(['MaintainerDeprecated', 'JSONArgsRecommended', 'JSONArgsRecommended']);
  });

  test('HEALTHCHECK NONE, exec form, durations in nanoseconds', async () => {
    const r = await build(`FROM ${BB}\nHEALTHCHECK --interval=1m30s --start-period=500ms --start-interval=2s CMD ["true"]\n`);
    expect(r.image.config?.Healthcheck).toEqual({ Test: ['CMD', 'true'], Interval: 90e9, StartPeriod: 5e8, StartInterval: 2e9 });
    expect((await build(`FROM ${BB}\nHEALTHCHECK NONE\n`)).image.config?.Healthcheck).toEqual({ Test: ['NONE'] });
    expect(await failure(`FROM ${BB}\nHEALTHCHECK --interval=10 CMD true\n`)).toMatch(/^Dockerfile:2:1: invalid duration for --interval: "10"/);
  });
});

describe('RUN', () => {
  test('flags: --network and --security reach the exec op; an unknown --mount type fails clearly', async () => {
    const r = await build(`FROM ${BB}\nRUN --network=none true\nRUN --network=host true\nRUN --security=insecure true\nRUN --network=default --security=sandbox true\n`);
    const execs = ops(r, 'exec');
    expect(execs.map((e) => e.network)).toEqual(['none', 'host', 'sandbox', 'sandbox']);
    expect(execs.map((e) => e.security)).toEqual([undefined, undefined, 'insecure', undefined]);
    expect(await failure(`FROM ${BB}\nRUN --mount=type=nfs,target=/x true\n`)).toMatch(/^Dockerfile:2:1: .*nfs/);
  });

  test('heredocs: a script, a shebang program, a heredoc fed to a command, chomp', async () => {
    const r = await build(`FROM ${BB}\nRUN <<EOF\necho a\necho b\nEOF\nRUN <<-"PY"\n\t#!/usr/bin/env python3\n\tprint("hi $X")\n\tPY\nRUN cat <<A >/x && cat <<B >/y\none\nA\ntwo\nB\n`);
    const [script, program, piped] = ops(r, 'exec').map((e) => e.meta.args);
    expect(script).toEqual(['/bin/sh', '-c', 'echo a\necho b\n']);
    expect(program).toEqual(['/bin/sh', '-c', "exec '/usr/bin/env' 'python3' /dev/fd/3 3<<'BUILDD_HEREDOC'\n#!/usr/bin/env python3\nprint(\"hi $X\")\nBUILDD_HEREDOC"]);
    expect(piped).toEqual(['/bin/sh', '-c', 'cat <<A >/x && cat <<B >/y\none\nA\ntwo\nB']);
    expect(r.definition.ops.map((o) => o.meta.name)[1]).toBe('[2/4] RUN <<EOF (echo a...)');
  });

  test('proxy args reach RUN without ARG and never enter history', async () => {
    const r = await build(`FROM ${BB}\nARG V=1\nRUN true\n`, { buildArgs: { HTTP_PROXY: 'http://p:3128' } });
    expect(ops(r, 'exec')[0].meta.env).toEqual([PATH, 'V=1', 'HTTP_PROXY=http://p:3128']);
    expect(r.image.history?.[2].created_by).toBe('RUN |1 V=1 /bin/sh -c true # buildkit');
    expect(r.warnings).toEqual([]);
  });
});

describe('COPY and ADD', () => {
  test('heredoc files, --link --parents --exclude, symbolic chmod', async () => {
    const r = await build(`FROM ${BB}\nARG N=world\nCOPY <<EOF /etc/hello\nhello $N\nEOF\nCOPY --chmod=0755 <<'X' <<Y /bin/\n$N\nX\n$N\nY\nCOPY --link --parents --exclude=*.md --exclude=tmp --chmod=u+x a/ /d/\n`);
    expect(ops(r, 'file').map((f) => f.actions)).toEqual([
      [{ type: 'mkfile', path: '/etc/hello', data: 'hello world\n', mode: 0o644 }],
      [{ type: 'mkfile', path: '/bin/X', data: '$N\n', mode: 0o755 }, { type: 'mkfile', path: '/bin/Y', data: 'world\n', mode: 0o755 }],
      [{ type: 'copy', src: 1, srcPaths: ['a/'], dest: '/d/', chmod: 'u+x', link: true, parents: true, exclude: ['*.md', 'tmp'] }],
    ]);
  });

  test('ADD of a URL and of git repositories', async () => {
    const sum = 'sha256:' + 'a'.repeat(64);
    const r = await build(`FROM ${BB}\nADD --checksum=${sum} https://example.com/dl/tool.tgz /opt/\nADD --keep-git-dir https://github.com/o/r.git#v1:src /src\nADD git@github.com:o/r.git /r\n`);
    expect(ops(r, 'source').slice(1)).toEqual([
      { kind: 'source', identifier: 'https://example.com/dl/tool.tgz', attrs: { filename: 'tool.tgz', checksum: sum } },
      { kind: 'source', identifier: 'git://https://github.com/o/r.git', attrs: { remote: 'https://github.com/o/r.git', ref: 'v1', subdir: 'src', keepGitDir: 'true' } },
      { kind: 'source', identifier: 'git://git@github.com:o/r.git', attrs: { remote: 'git@github.com:o/r.git' } },
    ]);
    expect(ops(r, 'file').map((f) => f.actions[0])).toEqual([
      { type: 'copy', src: 1, srcPaths: ['tool.tgz'], dest: '/opt/' },
      { type: 'copy', src: 1, srcPaths: ['/'], dest: '/src' },
      { type: 'copy', src: 1, srcPaths: ['/'], dest: '/r' },
    ]);
    expect(await failure(`FROM ${BB}\nADD --checksum=${sum} a.txt /a\n`)).toMatch(/--checksum can only be used with an http\(s\) source/);
  });
});

describe('ARG scoping and FROM', () => {
  test('global ARGs only in FROM unless redeclared; a bare redeclaration takes the global value', async () => {
    const r = await build(`ARG IMG=${BB}\nARG V=g\nFROM $IMG\nRUN echo $V\nARG V\nARG IMG\nENV R=$V-$IMG\n`);
    expect(r.image.config?.Env).toContain(`R=g-${BB}`);
    expect(ops(r, 'exec')[0].meta.env).toEqual([PATH]);
  });

  test('build args override; a stage FROM a stage inherits its ARG values; TARGETARCH needs ARG', async () => {
    const r = await build(`FROM ${BB} AS a\nARG V=1\nFROM a\nENV X=$V T=$TARGETARCH\nARG TARGETARCH\nENV Y=$TARGETARCH\n`, { buildArgs: { V: '2' } });
    expect(r.image.config?.Env).toEqual([PATH, 'X=2 T=', 'Y=amd64'].flatMap((e) => e.split(' ')));
  });

  test('--platform is expanded and passed to the resolver; other platforms are attrs', async () => {
    const resolver = fakeResolver();
    const r = await build(`FROM --platform=$BUILDPLATFORM ${BB} AS b\nFROM --platform=linux/arm64 ${BB}\nCOPY --from=b /x /x\n`, { resolveImage: resolver });
    expect(resolver.platforms.sort()).toEqual(['linux/amd64', 'linux/arm64']);
    expect(ops(r, 'source').map((s) => s.attrs.platform)).toEqual(['linux/arm64', undefined]);
    expect(r.image.architecture).toBe('arm64');
  });

  test('UndefinedArgInFrom, StageNameCasing, FromAsCasing; check=skip and error=true', async () => {
    const df = `FROM ${BB}$NOPE AS Build\nfrom build AS x\n`;
    expect((await build(df)).warnings.map((w) => w.message.split(':')[0])).toEqual(['StageNameCasing', 'FromAsCasing', 'UndefinedArgInFrom']);
    expect((await build(`# check=skip=StageNameCasing,UndefinedArgInFrom,FromAsCasing\n${df}`)).warnings).toEqual([]);
    expect(await failure(`# check=error=true\nFROM ${BB}\nCMD x\n`)).toMatch(/^Dockerfile:3:1: lint violation found for rules: JSONArgsRecommended/);
    expect((await build(`# syntax=example.com/other:1\nFROM ${BB}\n`)).warnings[0].message).toMatch(/another frontend than docker\/dockerfile/);
    expect((await build(`# syntax=docker/dockerfile:1\nFROM ${BB}\n`)).warnings).toEqual([]);
  });
});

describe('named contexts and ONBUILD', () => {
  test('context:NAME=docker-image:// and local: replace images and stages in FROM and --from', async () => {
    const resolver = fakeResolver({ [BB]: BUSYBOX, 'localhost:5000/other:1': BUSYBOX });
    const r = await build('FROM base\nCOPY --from=assets /x /x\n', {
      resolveImage: resolver, namedContexts: { base: 'docker-image://localhost:5000/other:1', assets: 'local:assets' },
    });
    expect(resolver.calls).toEqual(['localhost:5000/other:1']);
    expect(ops(r, 'source').map((s) => s.identifier)).toEqual(['docker-image://localhost:5000/other:1', 'local://assets']);
  });

  test('ONBUILD triggers of a base image and of a stage run first and are cleared', async () => {
    const withTriggers = structuredClone(BUSYBOX);
    (withTriggers.config as { OnBuild?: string[] }).OnBuild = ['RUN echo from-image'];
    const r = await build(`FROM onb AS a\nONBUILD ENV FROM_STAGE=1\nFROM a\nRUN true\n`, { resolveImage: fakeResolver({ onb: withTriggers }) });
    expect(ops(r, 'exec').map((e) => e.meta.args[2])).toEqual(['echo from-image', 'true']);
    expect(r.image.config?.OnBuild).toBeUndefined();
    expect(r.image.config?.Env).toEqual([PATH, 'FROM_STAGE=1']);
  });
});
