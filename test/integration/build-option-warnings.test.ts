import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';

const run = promisify(execFile);

/**
 * Options buildd ignores reach the person who gave them: the daemon warns about each unknown
 * or not-yet-supported `--opt` key and `--output` attribute, and buildctl prints the warning
 * in its progress output, while the build itself goes on as before. All real: registry,
 * daemon over mTLS, runc.
 */
describe('ignored build options are reported to the client', () => {
  let env: BuildEnv;

  beforeAll(async () => {
    env = await startBuildEnv();
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  test('a misspelt --opt and --output attribute get a warning with a suggestion; known but unsupported ones say so', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'typos'), {
      Dockerfile: `FROM ${env.busybox} AS first\nRUN echo first > /which\n\nFROM ${env.busybox} AS final\nRUN echo final > /which\n`,
    });
    const out = path.join(env.tmp, 'typos.oci.tar');
    const res = await env.build(ctx, [
      '--opt', 'targt=first', '--opt', 'label:org.example=1',
      '--output', `type=oci,dest=${out},compresion=zstd,compression=zstd`,
    ]);
    expect(res.stderr).not.toMatch(/^ERROR/m);
    expect(res.code).toBe(0);
    const warnings = res.stderr.split('\n').filter((l) => l.startsWith('WARNING: '));
    expect(warnings).toEqual(expect.arrayContaining([
      'WARNING: --opt targt is unknown and was ignored: did you mean target?',
      'WARNING: --opt label:org.example is not supported yet and was ignored',
      'WARNING: --output type=oci: compresion is unknown and was ignored: did you mean compression?',
    ]));
    expect(warnings).toHaveLength(3);
    // Ignored means ignored: the last stage was built, as without the misspelt target.
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${out}`]);
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers.length).toBeGreaterThan(1);
    // compression=zstd is honoured: the RUN layer is zstd; busybox's pulled layer stays as it came.
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci-archive:${out}`])).stdout) as { layers: { mediaType: string }[] };
    expect(raw.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd']);
    expect(res.stderr).toMatch(/\[final 2\/2\] RUN echo final/);
    expect(res.stderr).not.toMatch(/\[first 2\/2\]/);
  }, 180_000);

  test('options buildd implements build without a warning', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'clean'), {
      'Dockerfile.alt': `FROM ${env.busybox} AS first\nARG V\nRUN echo $V > /v\n\nFROM first AS unused\n`,
    });
    const out = path.join(env.tmp, 'clean.tar');
    const res = await env.build(ctx, [
      '--opt', 'filename=Dockerfile.alt', '--opt', 'target=first', '--opt', 'build-arg:V=1', '--opt', 'platform=linux/amd64',
      '--output', `type=docker,dest=${out},name=clean:1,tar=true,compression=gzip`,
    ]);
    expect(res.code).toBe(0);
    expect(res.stderr).not.toMatch(/WARNING/);
  }, 180_000);

  test('a boolean attribute buildd cannot read fails the build before it runs, as in BuildKit', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'badbool'), { Dockerfile: `FROM ${env.busybox}\nRUN echo never\n` });
    const res = await env.build(ctx, ['--output', 'type=image,name=localhost/app:1,push=yes']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^ERROR: failed to solve: Cannot use --output attribute push=yes: expected true or false$/m);
    expect(res.stderr).not.toMatch(/RUN echo never/);
  }, 180_000);
});
