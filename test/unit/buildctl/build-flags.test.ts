import { parseOutput, parseOutputs, splitCsv } from '../../../buildctl/build-flags';
import { parseArgs } from '../../../buildctl/parse-args';
import { BuildError } from '../../../solver/build-error';

const quiet = { writeOut: () => undefined, writeErr: () => undefined };

describe('output csv', () => {
  it('splits fields and honours quotes with commas and doubled quotes', () => {
    expect(splitCsv('type=image,"name=a,b",x=')).toEqual(['type=image', 'name=a,b', 'x=']);
    expect(splitCsv('"a ""q"" b",c')).toEqual(['a "q" b', 'c']);
    expect(() => splitCsv('"open')).toThrow(/unterminated quote/);
  });

  it('parses an image output without dest and keeps its attrs', () => {
    expect(parseOutput('type=image,name=reg.local/app:1,push=true')).toEqual({
      type: 'image',
      attrs: { name: 'reg.local/app:1', push: 'true' },
    });
  });

  it('takes type=registry as BuildKit does: an image output with push=true', () => {
    expect(parseOutput('type=registry,name=reg.local/app:1,push-by-digest=true')).toEqual({
      type: 'image',
      attrs: { name: 'reg.local/app:1', push: 'true', 'push-by-digest': 'true' },
    });
    expect(() => parseOutput('type=registry')).toThrow('Cannot parse --output type=registry: push=true needs a name');
  });

  it('keeps dest on the client for oci and docker outputs', () => {
    expect(parseOutput('type=oci,dest=/tmp/x.tar')).toEqual({ type: 'oci', attrs: {}, dest: '/tmp/x.tar' });
    expect(parseOutput('type=docker,dest=-,name=app')).toEqual({ type: 'docker', attrs: { name: 'app' }, dest: '-' });
  });

  it.each([
    ['name=x', /type is missing/],
    ['type=cacheonly', /type cacheonly is not supported/],
    ['type=local', /type=local needs dest=DIR/],
    ['type=oci', /needs dest/],
    ['type=image,push=true', /push=true needs a name/],
    ['type=image,noequals', /is not key=value/],
  ])('refuses %s', (csv, msg) => {
    expect(() => parseOutput(csv)).toThrow(msg);
  });

  it.each([
    ['type=oci,output=x.tar', 'Cannot parse --output type=oci,output=x.tar: output= is not an attribute: did you mean dest=x.tar?'],
    ['type=oci,dset=x.tar', 'Cannot parse --output type=oci,dset=x.tar: type=oci needs dest=FILE or dest=- (dset=: did you mean dest?)'],
    ['type=image,nmae=reg/app,push=true', 'Cannot parse --output type=image,nmae=reg/app,push=true: push=true needs a name (nmae=: did you mean name?)'],
    ['type=image,push=1', 'Cannot parse --output type=image,push=1: push=true needs a name'],
    ['type=image,push=', 'Cannot parse --output type=image,push=: push=true needs a name'],
  ])('refuses %s, naming the attribute it is missing and the typo of it', (csv, message) => {
    expect(() => parseOutput(csv)).toThrow(expect.objectContaining({ code: 'invalid-argument', message }));
  });

  it('passes unknown attributes on for the daemon to warn about, and a misspelt name when nothing needs one', () => {
    expect(parseOutput('type=image,nmae=reg/app,compresion=zstd')).toEqual({ type: 'image', attrs: { nmae: 'reg/app', compresion: 'zstd' } });
  });

  it('refuses two outputs that both stream to the client', () => {
    expect(() => parseOutputs(['type=oci,dest=a', 'type=docker,dest=b'])).toThrow(/at most one/);
  });
});

describe('buildctl flags', () => {
  it('takes --addr from BUILDKIT_HOST, else the unix socket default', () => {
    expect(parseArgs(['debug', 'info'], {}).connect.addr).toBe('unix:///run/buildd/buildd.sock');
    expect(parseArgs(['debug', 'info'], { BUILDKIT_HOST: 'tcp://h:1' }).connect.addr).toBe('tcp://h:1');
    expect(parseArgs(['--addr', 'tcp://x:2', 'debug', 'info'], { BUILDKIT_HOST: 'tcp://h:1' }).connect.addr).toBe('tcp://x:2');
  });

  it('parses build with repeatable --local, --opt and --output', () => {
    const args = parseArgs(
      [
        '--tlsdir', '/certs', '--tlsservername', 'buildd.example',
        'build', '--frontend', 'dockerfile.v0',
        '--local', 'context=.', '--local', 'dockerfile=./df',
        '--opt', 'filename=Dockerfile.dev', '--opt', 'build-arg:V=a=b', '--opt', 'target=final',
        '--output', 'type=image,name=app', '-o', 'type=oci,dest=-',
        '--no-cache', '--progress', 'plain', '--metadata-file', 'meta.json',
      ],
      {},
    );
    expect(args.connect).toMatchObject({ tlsdir: '/certs', tlsservername: 'buildd.example' });
    expect(args.command).toEqual({
      kind: 'build',
      frontend: 'dockerfile.v0',
      locals: { context: '.', dockerfile: './df' },
      frontendAttrs: { filename: 'Dockerfile.dev', 'build-arg:V': 'a=b', target: 'final' },
      outputs: [
        { type: 'image', attrs: { name: 'app' } },
        { type: 'oci', attrs: {}, dest: '-' },
      ],
      noCache: true,
      entitlements: [],
      progress: 'plain',
      metadataFile: 'meta.json',
    });
  });

  it("passes the client's $SOURCE_DATE_EPOCH on as the build arg, which an --opt overrides (as BuildKit's buildctl)", () => {
    const attrs = (argv: string[], env: NodeJS.ProcessEnv) => {
      const cmd = parseArgs(['build', '--frontend', 'dockerfile.v0', ...argv], env).command;
      return cmd.kind === 'build' ? cmd.frontendAttrs : undefined;
    };
    expect(attrs([], { SOURCE_DATE_EPOCH: '1700000000' })).toEqual({ 'build-arg:SOURCE_DATE_EPOCH': '1700000000' });
    expect(attrs(['--opt', 'build-arg:SOURCE_DATE_EPOCH=5'], { SOURCE_DATE_EPOCH: '1700000000' })).toEqual({ 'build-arg:SOURCE_DATE_EPOCH': '5' });
    expect(attrs([], {})).toEqual({});
  });

  it('defaults to cache on and auto progress', () => {
    const args = parseArgs(['build', '--frontend', 'dockerfile.v0'], {});
    expect(args.command).toMatchObject({ noCache: false, progress: 'auto', outputs: [], locals: {} });
  });

  it('refuses a missing frontend, a bad --local and an unknown progress mode', () => {
    expect(() => parseArgs(['build'], {})).toThrow(BuildError);
    expect(() => parseArgs(['build', '--frontend', 'f', '--local', 'nodir'], {})).toThrow(/expected key=value/);
    expect(() => parseArgs(['build', '--frontend', 'f', '--local', 'a=x', '--local', 'a=y'], {})).toThrow(/given twice/);
    expect(() => parseArgs(['build', '--frontend', 'f', '--progress', 'fancy'], {}, quiet)).toThrow(/Allowed choices/);
  });
});

describe('buildctl build --allow', () => {
  it('grants BuildKit entitlements, repeatable, duplicates once', () => {
    const args = parseArgs(['build', '--frontend', 'dockerfile.v0', '--allow', 'network.host', '--allow', 'security.insecure', '--allow', 'network.host'], {});
    expect(args.command).toMatchObject({ kind: 'build', entitlements: ['network.host', 'security.insecure'] });
    expect(parseArgs(['build', '--frontend', 'dockerfile.v0'], {}).command).toMatchObject({ entitlements: [] });
  });

  it('refuses an unknown entitlement before connecting', () => {
    let err: unknown;
    try {
      parseArgs(['build', '--frontend', 'dockerfile.v0', '--allow', 'network.hostt'], {}, quiet);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).message).toBe('Cannot parse --allow network.hostt: unknown entitlement network.hostt (network.host or security.insecure)');
  });
});
