import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { flattenImage } from '../conformance/harness/flatten-image';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');

/** The files of an image as the conformance harness flattens them, and its config. */
async function flatten(archive: string): Promise<{ config: Record<string, unknown>; files: Record<string, { type: string; mode: string; uid: number; gid: number; sha256?: string; target?: string }> }> {
  return flattenImage(archive);
}

function sha256(text: string): string {
  return require('node:crypto').createHash('sha256').update(text).digest('hex') as string;
}

/** Every Dockerfile step of the build reported CACHED, none DONE. */
function expectAllCached(progress: string): void {
  const steps = new Map<string, string>();
  for (const line of progress.split('\n')) {
    const m = /^(#\d+) \[(build|release) \d\/\d\]/.exec(line);
    if (m) steps.set(m[1], line);
  }
  expect(steps.size).toBe(7);
  for (const id of steps.keys()) {
    expect(progress).toContain(`${id} CACHED`);
    expect(progress).not.toContain(`${id} DONE`);
  }
}

describe('a real remote build over mutual TLS, from Dockerfile to registry', () => {
  let env: BuildEnv;
  let ctx: string;
  let name: string;
  let firstDigest: string;

  beforeAll(async () => {
    env = await startBuildEnv();
    ctx = await writeContext(path.join(env.tmp, 'ctx'), {
      'app.sh': { mode: 0o644, content: '#!/bin/sh\necho "$GREETING from $(cat /app/stamp) as $(id -u):$(id -g) in $(pwd)"\n' },
      'ignored.log': 'must not be sent\n',
      '.dockerignore': '*.log\n',
      Dockerfile: [
        `FROM ${env.busybox} AS build`,
        'ARG STAMP=default',
        'WORKDIR /src',
        'COPY app.sh ./',
        'RUN chmod 0755 app.sh && echo "$STAMP" > stamp && ls /src > listing',
        '',
        `FROM ${env.busybox} AS release`,
        'ENV GREETING=hello',
        'WORKDIR /app',
        'COPY --from=build /src/app.sh /src/stamp /src/listing ./',
        'RUN echo "$GREETING" > greeting',
        'USER 1000:1000',
        'CMD ["/app/app.sh"]',
        '',
        'FROM release AS debug',
        'RUN echo debug > /tmp/debug',
        '',
      ].join('\n'),
    });
    name = `${env.registry.host}/e2e/app:1.2`;
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  test('builds a multi-stage Dockerfile for a target and pushes it; skopeo sees the manifest and config', async () => {
    const md = path.join(env.tmp, 'md.json');
    const res = await env.build(ctx, [
      '--opt', 'target=release', '--opt', 'build-arg:STAMP=v1.2',
      '--output', `type=image,name=${name},push=true`, '--metadata-file', md,
    ]);
    expect(res.stderr).toContain('[release 4/4] RUN echo "hello" > greeting');
    expect(res.code).toBe(0);
    expect(res.stderr).not.toContain('debug');
    const metadata = JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>;
    firstDigest = metadata['containerimage.digest'];
    expect(firstDigest).toMatch(/^sha256:[a-f0-9]{64}$/);

    const { stdout: inspect } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${name}`]);
    expect(JSON.parse(inspect).Digest).toBe(firstDigest);
    const { stdout: cfgText } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${name}`]);
    const cfg = JSON.parse(cfgText) as { config: Record<string, unknown>; rootfs: { diff_ids: string[] }; history: Array<{ empty_layer?: boolean }> };
    expect(cfg.config.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hello']);
    expect(cfg.config.Cmd).toEqual(['/app/app.sh']);
    expect(cfg.config.WorkingDir).toBe('/app');
    expect(cfg.config.User).toBe('1000:1000');
    expect(cfg.rootfs.diff_ids).toHaveLength(4); // busybox + WORKDIR + COPY + RUN
    expect(cfg.history.filter((h) => !h.empty_layer)).toHaveLength(4);
    const { stdout: rawManifest } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${name}`]);
    expect(JSON.parse(rawManifest).config.digest).toBe(metadata['containerimage.config.digest']);
  }, 120_000);

  test('the pushed image, read back with skopeo, holds the expected files and runs its CMD under runc', async () => {
    const archive = path.join(env.tmp, 'pulled.oci.tar');
    await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${name}`, `oci-archive:${archive}`]);
    const { files } = await flatten(archive);
    expect(files['app/app.sh']).toMatchObject({ type: 'file', mode: '0o755', uid: 0, gid: 0 });
    expect(files['app/stamp']).toMatchObject({ type: 'file', sha256: sha256('v1.2\n') });
    expect(files['app/listing']).toMatchObject({ sha256: sha256('app.sh\nlisting\nstamp\n') });
    expect(files['app/greeting']).toMatchObject({ sha256: sha256('hello\n') });
    expect(files['app']).toMatchObject({ type: 'dir', mode: '0o755' });
    expect(files['bin/busybox']).toMatchObject({ type: 'file', mode: '0o755' });
    expect(files['tmp/debug']).toBeUndefined();
    expect(Object.keys(files).some((f) => f.endsWith('ignored.log'))).toBe(false);
    const { stdout } = await run('bash', [path.join(REPO, 'scripts', 'run-oci.sh'), archive]);
    expect(stdout.trim()).toBe('hello from v1.2 as 1000:1000 in /app');
  }, 120_000);

  test('the same build again runs no step: every step CACHED, same image digest', async () => {
    const md = path.join(env.tmp, 'md2.json');
    const res = await env.build(ctx, ['--opt', 'target=release', '--opt', 'build-arg:STAMP=v1.2', '--output', `type=image,name=${name},push=true`, '--metadata-file', md]);
    expect(res.code).toBe(0);
    expectAllCached(res.stderr);
    expect(JSON.parse(await fsp.readFile(md, 'utf8'))['containerimage.digest']).toBe(firstDigest);
  }, 120_000);

  test('after a daemon restart the build is still fully cached with the same digest', async () => {
    await env.restart();
    const md = path.join(env.tmp, 'md3.json');
    // push=true as in the first build: without push, built layers are described uncompressed
    // (nothing reads a compressed blob yet, see README "Outputs"), which is another digest.
    const res = await env.build(ctx, ['--opt', 'target=release', '--opt', 'build-arg:STAMP=v1.2', '--output', `type=image,name=${name},push=true`, '--metadata-file', md]);
    expect(res.code).toBe(0);
    expectAllCached(res.stderr);
    expect(JSON.parse(await fsp.readFile(md, 'utf8'))['containerimage.digest']).toBe(firstDigest);
  }, 120_000);

  test('--no-cache runs every step again', async () => {
    const res = await env.build(ctx, ['--opt', 'target=release', '--opt', 'build-arg:STAMP=v1.2', '--no-cache']);
    expect(res.code).toBe(0);
    expect(res.stderr).not.toContain('CACHED');
    expect(res.stderr).toMatch(/\[release 4\/4\] RUN echo "hello" > greeting\n#\d+ DONE/);
  }, 120_000);

  test('--opt filename= picks a Dockerfile anywhere in the dockerfile directory', async () => {
    const dfDir = await writeContext(path.join(env.tmp, 'df-dir'), {
      'nested/Build.prod': `FROM ${env.busybox}\nCOPY app.sh /from-prod.sh\n`,
      Dockerfile: 'FROM scratch\nthis file is not the one used\n',
    });
    const out = path.join(env.tmp, 'prod.oci.tar');
    const res = await env.buildctl(['build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${dfDir}`,
      '--opt', 'filename=nested/Build.prod', '--output', `type=oci,dest=${out}`]);
    expect(res.code).toBe(0);
    expect((await flatten(out)).files['from-prod.sh']).toMatchObject({ type: 'file' });
  }, 120_000);

  test('a changed context file reruns only what depends on it', async () => {
    const changed = await writeContext(path.join(env.tmp, 'ctx2'), {});
    await fsp.cp(ctx, changed, { recursive: true });
    await fsp.writeFile(path.join(changed, 'ignored.log'), 'changed but ignored\n');
    const same = await env.build(changed, ['--opt', 'target=release', '--opt', 'build-arg:STAMP=v1.2', '--output', `type=image,name=${name}`]);
    expect(same.code).toBe(0);
    // Changing an ignored file changes nothing the build reads: every step says CACHED.
    expectAllCached(same.stderr);
    await fsp.appendFile(path.join(changed, 'app.sh'), '# changed\n');
    const rebuilt = await env.build(changed, ['--opt', 'target=release', '--opt', 'build-arg:STAMP=v1.2', '--output', `type=image,name=${name}`]);
    expect(rebuilt.code).toBe(0);
    // a step that reruns says why first (buildd's cache-miss line)
    expect(rebuilt.stderr).toMatch(/\[build 3\/4\] COPY app.sh \.\/\n#\d+ cache miss: the content of app.sh changed\n#\d+ DONE/);
    expect(rebuilt.stderr).toMatch(/\[build 2\/4\] WORKDIR \/src\n#\d+ CACHED/);
  }, 120_000);

  test('oci and docker archives go to the client, to a file or to stdout', async () => {
    const oci = path.join(env.tmp, 'out.oci.tar');
    const docker = path.join(env.tmp, 'out.docker.tar');
    expect((await env.build(ctx, ['--opt', 'target=release', '--output', `type=oci,dest=${oci},name=${name}`])).code).toBe(0);
    expect((await env.build(ctx, ['--opt', 'target=release', '--output', `type=docker,dest=${docker},name=${name}`])).code).toBe(0);
    const { stdout: ociInspect } = await run('skopeo', ['inspect', `oci-archive:${oci}`]);
    expect(JSON.parse(ociInspect).Layers).toHaveLength(4);
    const { stdout: dockerInspect } = await run('skopeo', ['inspect', `docker-archive:${docker}`]);
    expect(JSON.parse(dockerInspect).Layers).toHaveLength(4);
    const { stdout: manifestJson } = await run('tar', ['-xOf', docker, 'manifest.json']);
    expect(JSON.parse(manifestJson)[0].RepoTags).toEqual([name]);
    const toStdout = await env.build(ctx, ['--opt', 'target=build', '--output', 'type=oci,dest=-']);
    expect(toStdout.code).toBe(0);
    const piped = path.join(env.tmp, 'stdout.oci.tar');
    await fsp.writeFile(piped, toStdout.stdoutBytes);
    const { files } = await flatten(piped);
    expect(files['src/app.sh']).toMatchObject({ type: 'file', mode: '0o755' });
  }, 120_000);
});
