import { BuildError } from '../../../solver/build-error';
import { Definition, definitionSchema, FileOp, Op, opDigest, ExecOp } from '../../../solver/op';
import { FrontendResult } from '../../../frontend/dockerfile-frontend';
import { BUSYBOX, build, fakeResolver } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function names(def: Definition): string[] {
  return def.ops.map((o) => o.meta.name);
}
function opNamed(def: Definition, prefix: string): Op {
  const found = def.ops.find((o) => o.meta.name.startsWith(prefix));
  if (!found) throw new Error(`no op named ${prefix}: ${names(def).join(', ')}`);
  return found.op;
}
function history(r: FrontendResult): Array<[string | undefined, boolean]> {
  return (r.image.history ?? []).map((h) => [h.created_by, h.empty_layer === true]);
}
/** Every digest is right, every input is emitted earlier, and layers match history. */
function checkInvariants(r: FrontendResult): void {
  definitionSchema.parse(r.definition);
  const seen = new Set<string>();
  for (const { digest, op } of r.definition.ops) {
    expect(opDigest(op)).toBe(digest);
    if (op.kind !== 'source') for (const input of op.inputs) expect(seen.has(input.digest)).toBe(true);
    expect(seen.has(digest)).toBe(false);
    seen.add(digest);
  }
  let chain = 0;
  let current = r.definition.result ? r.definition.ops.find((o) => o.digest === r.definition.result?.digest) : undefined;
  while (current && current.op.kind !== 'source') {
    chain++;
    const op: ExecOp | FileOp = current.op;
    const baseIndex = op.kind === 'exec' ? op.mounts[0].input : op.base;
    const base = baseIndex < 0 ? undefined : op.inputs[baseIndex];
    current = base ? r.definition.ops.find((o) => o.digest === base.digest) : undefined;
  }
  const withLayer = (r.image.history ?? []).filter((h) => !h.empty_layer).length;
  expect(withLayer).toBe(r.image.rootfs.diff_ids.length + chain);
}

describe('conformance cases (expected values read from the reference BuildKit)', () => {
  test('v01-basics: config and history as BuildKit writes them', async () => {
    const r = await build(`FROM ${BB}
ENV APP_HOME=/opt/app LANG=C.UTF-8
LABEL maintainer="team@example.com" version="1.0"
WORKDIR $APP_HOME
RUN echo "home is $APP_HOME" > note.txt
EXPOSE 8080
USER 1000:1000
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "cat note.txt"]
`);
    checkInvariants(r);
    expect(r.image.config).toEqual({
      User: '1000:1000', ExposedPorts: { '8080/tcp': {} }, Env: [PATH, 'APP_HOME=/opt/app', 'LANG=C.UTF-8'],
      Entrypoint: ['/bin/sh'], Cmd: ['-c', 'cat note.txt'], WorkingDir: '/opt/app',
      Labels: { maintainer: 'team@example.com', version: '1.0' }, ArgsEscaped: true,
    });
    expect(r.image).toMatchObject({ architecture: 'amd64', os: 'linux', rootfs: { diff_ids: BUSYBOX.rootfs.diff_ids } });
    expect(history(r)).toEqual([
      [undefined, false],
      ['ENV APP_HOME=/opt/app LANG=C.UTF-8', true],
      ['LABEL maintainer=team@example.com version=1.0', true],
      ['WORKDIR /opt/app', false],
      ['RUN /bin/sh -c echo "home is $APP_HOME" > note.txt # buildkit', false],
      ['EXPOSE map[8080/tcp:{}]', true],
      ['USER 1000:1000', true],
      ['ENTRYPOINT ["/bin/sh"]', true],
      ['CMD ["-c" "cat note.txt"]', true],
    ]);
    expect(r.image.history?.every((h, i) => i === 0 || (h.comment === 'buildkit.dockerfile.v0' && h.created === undefined))).toBe(true);
    expect(names(r.definition)).toEqual([`[1/3] FROM ${BB}`, '[2/3] WORKDIR /opt/app', '[3/3] RUN echo "home is /opt/app" > note.txt']);
    const run = opNamed(r.definition, '[3/3]') as ExecOp;
    expect(run.meta).toEqual({
      args: ['/bin/sh', '-c', 'echo "home is $APP_HOME" > note.txt'],
      env: [PATH, 'APP_HOME=/opt/app', 'LANG=C.UTF-8'], cwd: '/opt/app', user: '',
    });
    expect(run.mounts).toEqual([{ input: 0, dest: '/', output: 0, readonly: false }]);
    expect(run.network).toBe('sandbox');
    expect(opNamed(r.definition, '[1/3]')).toEqual({ kind: 'source', identifier: `docker-image://${BB}`, attrs: { digest: expect.stringMatching(/^sha256:/) } });
    expect(r.definition.ops[2].meta).toMatchObject({ range: { file: 'Dockerfile', startLine: 5, endLine: 5 }, ignoreCache: false });
  });

  test('v02-copy: copy actions, context source, dest resolution', async () => {
    const r = await build(`FROM ${BB}
COPY one.txt /one
COPY one.txt two.txt /both/
COPY *.txt /glob/
COPY conf /etc/app
COPY --chown=10:20 conf /owned/
COPY --chmod=0700 one.txt /private/one.txt
WORKDIR /work
COPY two.txt .
`);
    checkInvariants(r);
    expect(names(r.definition)).toEqual([
      `[1/9] FROM ${BB}`, '[internal] load build context', '[2/9] COPY one.txt /one', '[3/9] COPY one.txt two.txt /both/',
      '[4/9] COPY *.txt /glob/', '[5/9] COPY conf /etc/app', '[6/9] COPY --chown=10:20 conf /owned/',
      '[7/9] COPY --chmod=0700 one.txt /private/one.txt', '[8/9] WORKDIR /work', '[9/9] COPY two.txt .',
    ]);
    expect(opNamed(r.definition, '[internal]')).toEqual({ kind: 'source', identifier: 'local://context', attrs: {} });
    const actions = r.definition.ops.filter((o) => o.op.kind === 'file').map((o) => (o.op as FileOp).actions[0]);
    expect(actions).toEqual([
      { type: 'copy', src: 1, srcPaths: ['one.txt'], dest: '/one' },
      { type: 'copy', src: 1, srcPaths: ['one.txt', 'two.txt'], dest: '/both/' },
      { type: 'copy', src: 1, srcPaths: ['*.txt'], dest: '/glob/' },
      { type: 'copy', src: 1, srcPaths: ['conf'], dest: '/etc/app' },
      { type: 'copy', src: 1, srcPaths: ['conf'], dest: '/owned/', chown: { user: '10', group: '20' } },
      { type: 'copy', src: 1, srcPaths: ['one.txt'], dest: '/private/one.txt', chmod: 0o700 },
      { type: 'mkdir', path: '/work', mode: 0o755, makeParents: true },
      { type: 'copy', src: 1, srcPaths: ['two.txt'], dest: '/work/' },
    ]);
    expect(history(r).slice(1).map(([c]) => c)).toEqual([
      'COPY one.txt /one # buildkit', 'COPY one.txt two.txt /both/ # buildkit', 'COPY *.txt /glob/ # buildkit',
      'COPY conf /etc/app # buildkit', 'COPY conf /owned/ # buildkit', 'COPY one.txt /private/one.txt # buildkit',
      'WORKDIR /work', 'COPY two.txt . # buildkit',
    ]);
    expect(r.image.config).toEqual({ Env: [PATH], Cmd: ['sh'], WorkingDir: '/work' });
  });

  const V03 = `FROM ${BB} AS build
RUN mkdir /out && echo artifact > /out/app.bin

FROM ${BB} AS never
RUN exit 1

FROM ${BB} AS release
COPY --from=build /out/app.bin /usr/local/bin/app.bin
CMD ["cat", "/usr/local/bin/app.bin"]

FROM release AS debug
RUN echo debug > /debug
`;

  test('v03-multistage: target release builds only what it needs', async () => {
    const resolver = fakeResolver();
    const r = await build(V03, { target: 'release', resolveImage: resolver });
    checkInvariants(r);
    expect(names(r.definition)).toEqual([
      `[release 1/2] FROM ${BB}`, '[build 2/2] RUN mkdir /out && echo artifact > /out/app.bin',
      '[release 2/2] COPY --from=build /out/app.bin /usr/local/bin/app.bin',
    ]);
    expect(JSON.stringify(r.definition)).not.toContain('exit 1');
    expect(resolver.calls).toEqual([BB]);
    const copy = r.definition.ops[2].op as FileOp;
    expect(copy.inputs.map((i) => i.digest)).toEqual([r.definition.ops[0].digest, r.definition.ops[1].digest]);
    expect(copy.base).toBe(0);
    expect(copy.actions[0]).toMatchObject({ src: 1, srcPaths: ['/out/app.bin'], dest: '/usr/local/bin/app.bin' });
    expect(r.definition.result).toEqual({ digest: r.definition.ops[2].digest, index: 0 });
    expect(r.image.config).toEqual({ Env: [PATH], Cmd: ['cat', '/usr/local/bin/app.bin'], ArgsEscaped: true });
    expect(history(r)).toEqual([[undefined, false], ['COPY /out/app.bin /usr/local/bin/app.bin # buildkit', false], ['CMD ["cat" "/usr/local/bin/app.bin"]', true]]);
  });

  test('v03-multistage: default target is the last stage, which builds on release', async () => {
    const r = await build(V03);
    checkInvariants(r);
    expect(names(r.definition).at(-1)).toBe('[debug 1/1] RUN echo debug > /debug');
    expect(r.image.config?.Cmd).toEqual(['cat', '/usr/local/bin/app.bin']);
    expect(r.image.history).toHaveLength(4);
  });

  test('v05-args: global ARG in FROM, build-arg overrides a default, undeclared ARG is empty', async () => {
    const r = await build(`ARG IMAGE=${BB}
FROM $IMAGE
ARG VERSION=0.0.1
ARG CHANNEL
ENV APP_VERSION=$VERSION
RUN echo "version=$VERSION channel=\${CHANNEL:-stable}" > /build-info
`, { buildArgs: { VERSION: '2.0.0' } });
    checkInvariants(r);
    expect(r.image.config?.Env).toEqual([PATH, 'APP_VERSION=2.0.0']);
    expect(history(r).slice(1)).toEqual([
      ['ARG VERSION=0.0.1', true], ['ARG CHANNEL', true], ['ENV APP_VERSION=2.0.0', true],
      ['RUN |2 VERSION=2.0.0 CHANNEL= /bin/sh -c echo "version=$VERSION channel=${CHANNEL:-stable}" > /build-info # buildkit', false],
    ]);
    const run = r.definition.ops[1];
    expect(run.meta.name).toBe('[2/2] RUN echo "version=2.0.0 channel=${CHANNEL:-stable}" > /build-info');
    expect((run.op as ExecOp).meta.env).toEqual([PATH, 'VERSION=2.0.0', 'APP_VERSION=2.0.0']);
  });
});

describe('instructions', () => {
  test('FROM scratch: no op, empty image with the default PATH and WorkingDir /, COPY on scratch', async () => {
    const bare = await build('FROM scratch\n');
    expect(bare.definition).toEqual({ ops: [], result: null });
    expect(bare.image).toEqual({ architecture: 'amd64', os: 'linux', config: { Env: [PATH], WorkingDir: '/' }, rootfs: { type: 'layers', diff_ids: [] }, history: [] });
    const r = await build('FROM scratch\nCOPY a /a\n');
    checkInvariants(r);
    expect(names(r.definition)).toEqual(['[internal] load build context', '[1/1] COPY a /a']);
    expect(r.definition.ops[1].op).toMatchObject({ base: -1, actions: [{ src: 0 }] });
  });

  test('a base without PATH gets the default appended', async () => {
    const noPath = { ...BUSYBOX, config: { Env: ['A=1'] } };
    const r = await build('FROM img\nENV X=1\n', { resolveImage: fakeResolver({ img: noPath }) });
    expect(r.image.config?.Env).toEqual(['A=1', PATH, 'X=1']);
  });

  test('ENTRYPOINT drops the base CMD but keeps one set in the stage; shell forms', async () => {
    const r1 = await build(`FROM ${BB}\nENTRYPOINT echo hi\n`);
    expect(r1.image.config).toMatchObject({ Entrypoint: ['/bin/sh', '-c', 'echo hi'] });
    expect(r1.image.config?.Cmd).toBeUndefined();
    expect(history(r1)[1]).toEqual(['ENTRYPOINT ["/bin/sh" "-c" "echo hi"]', true]);
    const r2 = await build(`FROM ${BB}\nCMD run me\nENTRYPOINT ["e"]\n`);
    expect(r2.image.config).toMatchObject({ Entrypoint: ['e'], Cmd: ['/bin/sh', '-c', 'run me'] });
  });

  test('WORKDIR is relative to the previous one, chowned to USER, and / makes no op', async () => {
    const r = await build(`FROM ${BB}\nUSER 1000:1001\nWORKDIR /w/x\nUSER root\nWORKDIR sub\nWORKDIR /\n`);
    checkInvariants(r);
    const mkdirs = r.definition.ops.filter((o) => o.op.kind === 'file').map((o) => (o.op as FileOp).actions[0]);
    expect(mkdirs).toEqual([
      { type: 'mkdir', path: '/w/x', mode: 0o755, makeParents: true, chown: { user: '1000', group: '1001' } },
      { type: 'mkdir', path: '/w/x/sub', mode: 0o755, makeParents: true, chown: { user: 'root' } },
    ]);
    expect(names(r.definition)).toEqual([`[1/4] FROM ${BB}`, '[2/4] WORKDIR /w/x', '[3/4] WORKDIR sub']);
    expect(history(r).slice(-3)).toEqual([['WORKDIR /w/x', false], ['USER root', true], ['WORKDIR /w/x/sub', false], ['WORKDIR /', true]].slice(-3));
    expect(r.image.config?.WorkingDir).toBe('/');
  });

  test('EXPOSE, legacy ENV, quoted LABEL, ARG beside ENV (as read from the reference)', async () => {
    const r = await build(`FROM ${BB}
EXPOSE 80 53/udp 8000-8001/tcp
ENV LEG some  value
LABEL "a b"="c d" e=f\\ g
ARG TARGETARCH
ARG FOO=bar
ENV FOO=env
RUN echo $FOO $TARGETARCH
`);
    expect(r.image.config).toMatchObject({
      ExposedPorts: { '53/udp': {}, '80/tcp': {}, '8000/tcp': {}, '8001/tcp': {} },
      Env: [PATH, 'LEG=some  value', 'FOO=env'], Labels: { 'a b': 'c d', e: 'f g' },
    });
    expect(history(r).slice(1).map(([c]) => c)).toEqual([
      'EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]', 'ENV LEG=some  value', 'LABEL a b=c d e=f g',
      'ARG TARGETARCH', 'ARG FOO=bar', 'ENV FOO=env', 'RUN |2 TARGETARCH=amd64 FOO=env /bin/sh -c echo $FOO $TARGETARCH # buildkit',
    ]);
    expect(names(r.definition)[1]).toBe('[2/2] RUN echo env amd64');
  });

  test('RUN exec form, USER and WORKDIR reach the exec op; ARG values never reach the image', async () => {
    const r = await build(`FROM ${BB}\nARG SECRETISH=v\nUSER nobody\nRUN ["echo", "a b"]\n`);
    const run = r.definition.ops[1].op as ExecOp;
    expect(run.meta).toEqual({ args: ['echo', 'a b'], env: [PATH, 'SECRETISH=v'], cwd: '/', user: 'nobody' });
    expect(r.image.config?.Env).toEqual([PATH]);
    expect(history(r).at(-1)).toEqual(['RUN |1 SECRETISH=v echo a b # buildkit', false]);
  });

  test('expansion in ENV, COPY, WORKDIR, USER, LABEL, EXPOSE but not in CMD', async () => {
    const r = await build(`FROM ${BB}
ENV D=/data U=app P=9000 E=
ENV W=\${D}/w X=\${E:-dflt} Y=\${E-set} Z=\${D:+yes} Q='$D' R=\\$D
WORKDIR $W
USER \${U}
LABEL dir=$D
EXPOSE $P
COPY $U.txt \${D}/
CMD ["$D"]
`);
    expect(r.image.config).toMatchObject({
      WorkingDir: '/data/w', User: 'app', Labels: { dir: '/data' }, ExposedPorts: { '9000/tcp': {} }, Cmd: ['$D'],
    });
    expect(r.image.config?.Env).toEqual(expect.arrayContaining(['W=/data/w', 'X=dflt', 'Y=', 'Z=yes', 'Q=$D', 'R=$D']));
    expect(r.definition.ops.at(-1)?.op).toMatchObject({ actions: [{ srcPaths: ['app.txt'], dest: '/data/' }] });
  });

  test('ENV values are expanded against the environment before the instruction', async () => {
    const r = await build(`FROM ${BB}\nENV A=1\nENV A=2 B=$A\n`);
    expect(r.image.config?.Env).toEqual([PATH, 'A=2', 'B=1']);
  });

  test('a redeclared ARG without default takes the global value; build args override globals', async () => {
    const df = `ARG V=global\nARG W=w\nFROM ${BB}\nARG V\nARG W\nRUN echo\n`;
    const r = await build(df, { buildArgs: { W: 'cli', UNUSED: 'x', BUILDKIT_INLINE_CACHE: '1' } });
    expect((r.definition.ops[1].op as ExecOp).meta.env).toEqual([PATH, 'V=global', 'W=cli']);
    expect(r.warnings).toEqual([{ message: 'One or more build-args [UNUSED] were not consumed' }]);
    const unscoped = await build(`ARG V=global\nFROM ${BB}\nRUN echo $V\n`);
    expect((unscoped.definition.ops[1].op as ExecOp).meta.env).toEqual([PATH]);
  });

  test('COPY --from by index and by image; identical ops appear once', async () => {
    const resolver = fakeResolver({ [BB]: BUSYBOX, 'other:1': BUSYBOX });
    const r = await build(`FROM ${BB}\nRUN make\nFROM ${BB}\nCOPY --from=0 /a /a\nCOPY --from=other:1 /b /b\n`, { resolveImage: resolver });
    checkInvariants(r);
    expect(names(r.definition)).toEqual([
      `[stage-1 1/3] FROM ${BB}`, '[stage-0 2/2] RUN make', '[stage-1 2/3] COPY --from=0 /a /a',
      'FROM other:1', '[stage-1 3/3] COPY --from=other:1 /b /b',
    ]);
    expect(resolver.calls.sort()).toEqual([BB, 'other:1']);
  });

  test('noCache marks every op', async () => {
    const r = await build(`FROM ${BB}\nCOPY a /a\nRUN x\n`, { noCache: true });
    expect(r.definition.ops.every((o) => o.meta.ignoreCache === true)).toBe(true);
  });
});

describe('errors', () => {
  async function failure(df: string, extra: Parameters<typeof build>[1] = {}): Promise<BuildError> {
    try {
      await build(df, extra);
    } catch (err) {
      expect(err).toBeInstanceOf(BuildError);
      return err as BuildError;
    }
    throw new Error('expected the build to fail');
  }

  test('unknown instruction, unknown flag and unsupported instruction carry Dockerfile:LINE and a range', async () => {
    const e1 = await failure(`FROM ${BB}\n\nCOPPY a /a\n`);
    expect(e1.message).toBe('Dockerfile:3:1: unknown instruction COPPY: did you mean COPY?\n 3 | COPPY a /a');
    expect(e1.range).toEqual({ file: 'Dockerfile', startLine: 3, endLine: 3, column: 1 });
    expect((await failure(`FROM ${BB}\nCOPY --lnk a /a\n`)).message.split('\n')[0]).toBe('Dockerfile:2:6: unknown flag --lnk for COPY: did you mean --link?');
    expect((await failure(`FROM ${BB}\nHEALTHCHECK NON\n`, { filename: 'app.Dockerfile' })).message.split('\n')[0]).toBe('app.Dockerfile:2:1: unknown type "NON" in HEALTHCHECK (try CMD)');
  });

  test('an error in a stage the target does not use still fails, as in BuildKit', async () => {
    expect((await failure(`FROM ${BB} AS a\nFOO x\nFROM ${BB}\n`)).message.split('\n')[0]).toBe('Dockerfile:2:1: unknown instruction FOO');
  });

  test('bad JSON: non-string array is an error', async () => {
    expect((await failure(`FROM ${BB}\nENTRYPOINT ["a", 1]\n`)).message.split('\n')[0]).toBe('Dockerfile:2:1: when using JSON array syntax, arrays must be comprised of strings only');
  });

  test('missing target, empty file, no FROM', async () => {
    const e = await failure(`FROM ${BB} AS a\n`, { target: 'nope' });
    expect(e.code).toBe('not-found');
    expect(e.message).toContain('target stage "nope" could not be found');
    expect((await failure('')).message).toContain('the Dockerfile cannot be empty');
    expect((await failure('ARG X=1\n')).message).toContain('no stages to build');
  });

  test('cyclic and forward --from, bad index, variables in --from', async () => {
    expect((await failure(`FROM ${BB} AS a\nCOPY --from=a /x /x\n`)).message.split('\n')[0]).toBe('Dockerfile:1:1: circular dependency detected on stage: a');
    expect((await failure(`FROM ${BB} AS a\nCOPY --from=b /x /x\nFROM ${BB} AS b\n`, { target: 'a' })).message.split('\n')[0])
      .toBe('Dockerfile:2:1: cannot copy from stage "b", it needs to be defined before current stage "a"');
    expect((await failure(`FROM ${BB}\nCOPY --from=5 /x /x\n`)).message.split('\n')[0]).toBe('Dockerfile:2:1: invalid stage index 5');
    expect((await failure(`FROM ${BB}\nARG S=a\nCOPY --from=$S /x /x\n`)).message.split('\n')[0]).toMatch(/^Dockerfile:3:1: variable expansion is not supported for --from/);
  });

  test('COPY checks: several sources need a directory, chmod must be octal, chown not empty (but :group is root with that group)', async () => {
    expect((await failure(`FROM ${BB}\nCOPY a b /dst\n`)).message.split('\n')[0]).toBe('Dockerfile:2:1: When using COPY with more than one source file, the destination must be a directory and end with a /');
    expect((await failure(`FROM ${BB}\nCOPY --chmod=999 a /a\n`)).message.split('\n')[0]).toMatch(/^Dockerfile:2:1: invalid --chmod value/);
    expect((await failure(`FROM ${BB}\nCOPY --chown=a: a /a\n`)).message.split('\n')[0]).toMatch(/^Dockerfile:2:1: invalid --chown value/);
    const copy = (await build(`FROM ${BB}\nCOPY --chown=:g a /a\n`)).definition.ops.map((o) => o.op).find((op) => op.kind === 'file');
    expect(copy?.kind === 'file' && copy.actions[0].type === 'copy' ? copy.actions[0].chown : undefined).toEqual({ user: '0', group: 'g' });
  });

  test('a resolver failure names the line and the ref', async () => {
    const e = await failure('FROM missing:1\n');
    expect(e.code).toBe('not-found');
    expect(e.message.split('\n')[0]).toBe('Dockerfile:1:1: missing:1: Cannot resolve missing:1: no such image');
    expect(e.range).toMatchObject({ startLine: 1 });
  });

  test('bad substitutions and blank base names', async () => {
    expect((await failure(`FROM ${BB}\nENV A="x\n`)).message.split('\n')[0]).toMatch(/^Dockerfile:2:1: unexpected end of statement/);
    expect((await failure('ARG B\nFROM $B\n')).message.split('\n')[0]).toBe('Dockerfile:2:1: base name ($B) should not be blank');
  });

  test('a cancelled build does not call the resolver', async () => {
    const resolver = fakeResolver();
    const ac = new AbortController();
    ac.abort();
    const e = await failure(`FROM ${BB}\n`, { resolveImage: resolver, signal: ac.signal });
    expect(e.code).toBe('cancelled');
    expect(resolver.calls).toEqual([]);
  });
});
