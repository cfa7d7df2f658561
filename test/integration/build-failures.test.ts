import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';
import { waitFor } from '../helpers/wait-for';

const BUILDCTL = path.resolve(__dirname, '..', '..', 'dist', 'buildctl', 'main.js');

describe('builds that fail leave the daemon serving and nothing behind', () => {
  let env: BuildEnv;
  let good: string;

  beforeAll(async () => {
    env = await startBuildEnv();
    good = await writeContext(path.join(env.tmp, 'good'), { Dockerfile: `FROM ${env.busybox}\nRUN echo fine > /fine\n` });
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  test('a broken Dockerfile fails with Dockerfile:LINE, and the daemon serves the next build', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'broken'), {
      Dockerfile: `FROM ${env.busybox}\nRUN echo ok\nCOPPY a /b\n`,
    });
    const res = await env.build(ctx, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'never.tar')]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('Dockerfile:3');
    expect(res.stderr).toContain('Dockerfile:3:1: unknown instruction COPPY: did you mean COPY?\n 3 | COPPY a /b');
    expect(res.stderr).not.toMatch(/\n\s+at .*\.js:\d+/); // no stack trace for a person
    const next = await env.build(good, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'next.tar')]);
    expect(next.code).toBe(0);
  }, 120_000);

  test('a failing RUN exits non-zero naming the step, its exit code and its last output; no container or mount remains', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'failing'), {
      Dockerfile: `FROM ${env.busybox}\nRUN echo first line && echo about to fail >&2 && exit 3\n`,
    });
    const res = await env.build(ctx, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'never2.tar')]);
    expect(res.code).not.toBe(0);
    expect(existsSync(path.join(env.tmp, 'never2.tar'))).toBe(false); // no half tar passing for an image
    expect(res.stderr).toContain('RUN echo first line && echo about to fail >&2 && exit 3');
    expect(res.stderr).toContain('exit code: 3');
    expect(res.stderr).toContain('about to fail');
    // BuildKit's summary: the failed step, its last output lines, and where it is in the Dockerfile.
    // (stdout and stderr are separate pipes: their lines may arrive in either order)
    expect(res.stderr).toMatch(/------\n > \[2\/2\] RUN echo first line .*:\n([0-9.]+ (first line|about to fail)\n){2}------\nDockerfile:2\n/);
    expect(await env.runcContainers()).toEqual([]);
    expect(await env.mounts()).toEqual([]);
    const next = await env.build(good, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'next2.tar')]);
    expect(next.code).toBe(0);
  }, 120_000);

  /** Starts `buildctl build` of a RUN that sleeps, and resolves once its container runs. */
  async function startSlowBuild(name: string): Promise<{ child: ReturnType<typeof spawn>; exit: Promise<number | null> }> {
    const ctx = await writeContext(path.join(env.tmp, name), { Dockerfile: `FROM ${env.busybox}\nRUN echo started && sleep 1000\n` });
    const child = spawn(process.execPath, [BUILDCTL, '--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
      '--output', 'type=oci,dest=' + path.join(env.tmp, `${name}.tar`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('the RUN to start', async () => ((await env.runcContainers()).length === 1 && stderr.includes('started') ? true : undefined));
    return { child, exit };
  }

  test('a client that goes away cancels its build: the container is killed and its mounts released', async () => {
    const { child, exit } = await startSlowBuild('slow-client');
    child.kill('SIGINT');
    await exit;
    await waitFor('the container to go', async () => ((await env.runcContainers()).length === 0 && (await env.mounts()).length === 0 ? true : undefined));
    expect((await env.build(good, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'next3.tar')])).code).toBe(0);
  }, 120_000);

  test('SIGTERM cancels running builds, kills their containers, releases their mounts and exits 0', async () => {
    const { exit: clientExit } = await startSlowBuild('slow');
    const code = await env.daemon.stop();
    expect(code).toBe(0);
    expect(await clientExit).not.toBe(0);
    expect(await env.runcContainers()).toEqual([]);
    expect(await env.mounts()).toEqual([]);
    await env.restart();
    expect((await env.build(good, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'next4.tar')])).code).toBe(0);
    await fsp.rm(path.join(env.tmp, 'next4.tar'), { force: true });
  }, 120_000);

  test('after kill -9 mid-build, a restarted daemon deletes the orphan container and mounts, and keeps its cache', async () => {
    const warm = await env.build(good, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'warm.tar')]);
    expect(warm.code).toBe(0);
    const { exit: clientExit } = await startSlowBuild('killed');
    env.daemon.process.kill('SIGKILL');
    await clientExit;
    expect((await env.mounts()).length).toBeGreaterThan(0); // what the killed daemon left
    await env.restart();
    expect(await env.runcContainers()).toEqual([]);
    expect(await env.mounts()).toEqual([]);
    const again = await env.build(good, ['--output', 'type=oci,dest=' + path.join(env.tmp, 'after-kill.tar')]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/\[2\/2\] RUN echo fine > \/fine\n#\d+ CACHED/);
  }, 120_000);
});
