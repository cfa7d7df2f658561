import { execFile } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { startBuildEnv, type BuildEnv } from '../helpers/build-env';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';

const run = promisify(execFile);
const EPOCH = 1_700_000_000;
const EPOCH_TIME = '2023-11-14T22:13:20Z';
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

interface OciImage {
  digest: string;
  config: { created?: string; history?: Array<{ created?: string; created_by?: string }> };
  layers: Array<{ digest: string }>;
  dir: string;
}

/** The image of an OCI layout tar: its manifest digest, config and layer blobs, unpacked under `dir`. */
async function readOci(file: string): Promise<OciImage> {
  const dir = `${file}.d`;
  await fsp.mkdir(dir, { recursive: true });
  await run('tar', ['-xf', file, '-C', dir]);
  const blob = (digest: string) => path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const digest = index.manifests[0].digest;
  const manifest = JSON.parse(await fsp.readFile(blob(digest), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  return { digest, config: JSON.parse(await fsp.readFile(blob(manifest.config.digest), 'utf8')), layers: manifest.layers, dir };
}

/** name → mtime (seconds) of every entry of a (gzipped) tar. */
async function tarTimes(file: string, gzipped: boolean): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  const extract = tar.extract();
  extract.on('entry', (h, stream, next) => {
    times.set(h.name, (h.mtime as Date).getTime() / 1000);
    stream.on('end', next).resume();
  });
  if (gzipped) await pipeline(createReadStream(file), createGunzip(), extract);
  else await pipeline(createReadStream(file), extract);
  return times;
}

/**
 * SOURCE_DATE_EPOCH with rewrite-timestamp=true: the same sources built on another daemon, days
 * later by its clock, with context files of other times, give the same image digest.
 */
describe('reproducible images: SOURCE_DATE_EPOCH and rewrite-timestamp', () => {
  let env: BuildEnv;
  let later: TestDaemon | undefined;
  let ctx: string;
  const epochArgs = ['--opt', `build-arg:SOURCE_DATE_EPOCH=${EPOCH}`];

  beforeAll(async () => {
    env = await startBuildEnv();
    ctx = path.join(env.tmp, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nCOPY app.txt /app/app.txt\nRUN echo built > /app/built && mkdir /app/made\nENV MODE=release\n`);
    await fsp.writeFile(path.join(ctx, 'app.txt'), 'app\n');
  }, 120_000);

  afterAll(async () => {
    await later?.stop();
    await env?.stop();
  });

  test('two builds on different days and daemons give one digest; without rewrite-timestamp the layers differ', async () => {
    const first = path.join(env.tmp, 'first.tar');
    const res = await env.build(ctx, [...epochArgs, '--output', `type=oci,dest=${first},rewrite-timestamp=true`]);
    expect(res.stderr).not.toMatch(/WARNING|ERROR/);
    expect(res.code).toBe(0);
    const a = await readOci(first);

    // the config: created and this build's history at the epoch, the base image's entry as it was
    expect(a.config.created).toBe(EPOCH_TIME);
    const history = a.config.history ?? [];
    expect(history.length).toBe(4);
    // the test's base image has no times in its history: it keeps none
    expect(history[0].created).toBeUndefined();
    expect(history.slice(1).map((h) => h.created)).toEqual([EPOCH_TIME, EPOCH_TIME, EPOCH_TIME]);
    // the base layer is the base image's blob; every time in the built layers is at most the epoch
    const base = (await run('skopeo', ['inspect', '--tls-verify=false', `docker://${env.busybox}`])).stdout;
    expect(a.layers[0].digest).toBe((JSON.parse(base) as { Layers: string[] }).Layers[0]);
    for (const layer of a.layers.slice(1)) {
      const times = await tarTimes(path.join(a.dir, 'blobs', 'sha256', layer.digest.slice(7)), true);
      expect(times.size).toBeGreaterThan(0);
      expect(Math.max(...times.values())).toBeLessThanOrEqual(EPOCH);
    }

    // another daemon with its own root, its clock three days ahead; the context file touched since
    await fsp.utimes(path.join(ctx, 'app.txt'), new Date(), new Date(Date.now() + 86_400_000));
    later = await startDaemon({
      builder: 'real',
      root: path.join(env.tmp, 'later-root'),
      env: { LD_PRELOAD: LIBFAKETIME, FAKETIME: '+3d', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
    });
    const laterBuild = (extra: string[]) => runBuildctl(['--addr', (later as TestDaemon).addr, '--tlsdir', path.join((later as TestDaemon).certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra]);
    const second = path.join(env.tmp, 'second.tar');
    const again = await laterBuild([...epochArgs, '--output', `type=oci,dest=${second},rewrite-timestamp=true`]);
    expect(again.code).toBe(0);
    const b = await readOci(second);
    expect(b.digest).toBe(a.digest);

    // the same build without rewrite-timestamp: the config is clamped, the layers keep their file times
    const plain = path.join(env.tmp, 'plain.tar');
    expect((await laterBuild([...epochArgs, '--output', `type=oci,dest=${plain}`])).code).toBe(0);
    const c = await readOci(plain);
    expect(c.config.created).toBe(EPOCH_TIME);
    expect(c.digest).not.toBe(a.digest);
    expect(c.layers[1].digest).not.toBe(a.layers[1].digest);
  }, 240_000);

  test('type=tar gives every entry the epoch; rewrite-timestamp without an epoch says it does nothing', async () => {
    const out = path.join(env.tmp, 'fs.tar');
    const res = await env.build(ctx, [...epochArgs, '--output', `type=tar,dest=${out}`]);
    expect(res.code).toBe(0);
    const times = await tarTimes(out, false);
    expect(times.get('app/app.txt')).toBe(EPOCH);
    expect(new Set(times.values())).toEqual(new Set([EPOCH]));

    const warned = await env.build(ctx, ['--output', `type=oci,dest=${path.join(env.tmp, 'no-epoch.tar')},rewrite-timestamp=true`]);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain('rewrite-timestamp is set, but there is no SOURCE_DATE_EPOCH');
  }, 120_000);

  test("the Dockerfile's global ARG SOURCE_DATE_EPOCH default is the epoch when no build arg is given, as in BuildKit", async () => {
    const dir = path.join(env.tmp, 'arg-default');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'Dockerfile'), `ARG SOURCE_DATE_EPOCH=${EPOCH}\nFROM ${env.busybox}\nRUN echo x > /x\n`);
    const out = path.join(env.tmp, 'arg-default.tar');
    const res = await env.build(dir, ['--output', `type=oci,dest=${out}`]);
    expect(res.code).toBe(0);
    expect((await readOci(out)).config.created).toBe(EPOCH_TIME);
  }, 60_000);

  test('a SOURCE_DATE_EPOCH that is not a number fails before anything runs', async () => {
    const res = await env.build(ctx, ['--opt', 'build-arg:SOURCE_DATE_EPOCH=yesterday', '--output', 'type=image,name=never']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('Cannot use build arg SOURCE_DATE_EPOCH: "yesterday" is not a number of seconds since 1970');
    expect(res.stderr).not.toContain('RUN');
  }, 60_000);
});
