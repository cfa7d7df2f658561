import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { SecretsDir } from '../../buildd/worker/mounts/secrets-dir';
import { flattenImage } from '../conformance/harness/flatten-image';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';
import { runBuildctl, type RunResult } from '../helpers/daemon';
import { waitFor } from '../helpers/wait-for';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');

function sha256(data: string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function flatten(archive: string): Promise<Record<string, { type: string; mode: string; uid: number; gid: number; sha256?: string }>> {
  return (await flattenImage(archive)).files;
}

/** Every regular file under `dir` (gzip ones also decompressed) that holds `needle`. */
async function filesHolding(dir: string, needle: Buffer): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        // a network namespace handle (nsfs, bind-mounted on a file) has no content to read
        const data = await fsp.readFile(p).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'EINVAL' && p.endsWith('/ns')) return Buffer.alloc(0);
          throw new Error(`${p}: ${err.message}`);
        });
        if (data.includes(needle)) found.push(p);
        // a gzip stream still being written (a running build's history log) gives what it holds so far
        else if (data[0] === 0x1f && data[1] === 0x8b && zlib.gunzipSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).includes(needle)) found.push(`${p} (gunzipped)`);
      }
    }
  };
  await walk(dir);
  return found;
}

describe('RUN --mount=type=secret and type=ssh, with buildctl --secret and --ssh', () => {
  let env: BuildEnv;
  // made here, so it appears nowhere but where the client keeps it
  const fileSecret = `file-secret-${randomBytes(16).toString('hex')}`;
  const envSecret = `env-secret-${randomBytes(16).toString('hex')}`;
  let secretFile: string;

  const buildctl = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> =>
    runBuildctl(['--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--progress', 'plain', ...args], extraEnv);
  const buildDir = (dir: string, extra: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> =>
    buildctl(['--local', `context=${dir}`, '--local', `dockerfile=${dir}`, ...extra], extraEnv);

  beforeAll(async () => {
    env = await startBuildEnv();
    secretFile = path.join(env.tmp, 'token.txt');
    await fsp.writeFile(secretFile, fileSecret);
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  /** Nothing of a step is left: no container, no mount, no secrets directory content. */
  async function expectNothingLeft(): Promise<void> {
    expect(await env.runcContainers()).toEqual([]);
    expect(await env.mounts()).toEqual([]);
    // the last step out removed the secrets dir itself
    expect(await fsp.stat(SecretsDir.forDaemon(path.join(env.root, 'tmp')).base).catch(() => 'gone')).toBe('gone');
  }

  test('a secret from a file and one from an env var are readable in the step and reach no layer, config, cache record, log or file of the root', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'secret-ctx'), {
      Dockerfile: [
        `FROM ${env.busybox}`,
        `RUN --mount=type=secret,id=token sh -c 'sha256sum /run/secrets/token | cut -d" " -f1 > /token.sha; stat -c "%a %u %g" /run/secrets/token > /token.stat'`,
        `RUN --mount=type=secret,id=envtok,env=TOKEN sh -c 'printf %s "$TOKEN" | sha256sum | cut -d" " -f1 > /env.sha; test ! -e /run/secrets/envtok && echo nofile > /env.file'`,
        `RUN --mount=type=secret,id=token,target=/etc/app/key,mode=0440,uid=1000,gid=1000,env=BOTH sh -c 'stat -c "%a %u %g" /etc/app/key > /custom.stat; printf %s "$BOTH" | sha256sum | cut -d" " -f1 > /both.sha'`,
        `RUN --mount=type=secret,id=absent sh -c 'ls /run/secrets/absent > /absent.ls 2>&1 || echo none > /absent.ls'`,
        '',
      ].join('\n'),
    });
    const out = path.join(env.tmp, 'secret-img.tar');
    const res = await buildDir(ctx, ['--secret', `id=token,src=${secretFile}`, '--secret', 'id=envtok,env=MY_TOKEN', '--output', `type=oci,dest=${out}`], { MY_TOKEN: envSecret });
    expect(res.stderr).not.toMatch(/ERROR/);
    expect(res.code).toBe(0);

    const files = await flatten(out);
    const content = (text: string): string => sha256(text);
    expect(files['token.sha']?.sha256).toBe(content(`${sha256(fileSecret)}\n`));
    expect(files['token.stat']?.sha256).toBe(content('400 0 0\n'));
    expect(files['env.sha']?.sha256).toBe(content(`${sha256(envSecret)}\n`));
    expect(files['env.file']?.sha256).toBe(content('nofile\n'));
    expect(files['custom.stat']?.sha256).toBe(content('440 1000 1000\n'));
    expect(files['both.sha']?.sha256).toBe(content(`${sha256(fileSecret)}\n`));
    expect(files['absent.ls']?.sha256).toBe(content('none\n'));
    // the mount targets leave nothing in the layers (BuildKit removes its mount stubs)
    expect(Object.keys(files).filter((f) => f === 'run' || f.startsWith('run/') || f.startsWith('etc/app'))).toEqual([]);

    for (const secret of [fileSecret, envSecret]) {
      const needle = Buffer.from(secret);
      // progress output, the daemon's log, every file of the root (content store blobs
      // decompressed, cache records, metadata, snapshots) and the exported image
      expect(res.stderr + res.stdout).not.toContain(secret);
      expect(env.daemon.stderr()).not.toContain(secret);
      expect(await filesHolding(env.root, needle)).toEqual([]);
      const unpacked = path.join(env.tmp, 'secret-img');
      await fsp.mkdir(unpacked, { recursive: true });
      await run('tar', ['-xf', out, '-C', unpacked]);
      expect(await filesHolding(unpacked, needle)).toEqual([]);
    }
    await expectNothingLeft();
  }, 240_000);

  test('the secret value is not part of the cache key: another value reuses the cached step, --no-cache runs it again', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'cache-ctx'), {
      Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=secret,id=k sh -c 'cat /run/secrets/k > /dev/null; echo ran'\n`,
    });
    const first = await buildDir(ctx, ['--secret', 'id=k,env=K'], { K: 'one' });
    expect(first.code).toBe(0);
    const second = await buildDir(ctx, ['--secret', 'id=k,env=K'], { K: 'two' });
    expect(second.code).toBe(0);
    expect(first.stderr).toMatch(/^#\d+ [\d.]+ ran$/m);
    expect(second.stderr).toMatch(/\[2\/2\] RUN .*\n#\d+ CACHED/);
    expect(second.stderr).not.toMatch(/^#\d+ [\d.]+ ran$/m);
    const third = await buildDir(ctx, ['--secret', 'id=k,env=K', '--no-cache'], { K: 'two' });
    expect(third.code).toBe(0);
    expect(third.stderr).toMatch(/^#\d+ [\d.]+ ran$/m);
  }, 240_000);

  test('required=true without the secret fails, naming the id; a missing --secret src fails before the build', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'required-ctx'), {
      Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=secret,id=needed,required=true true\n`,
    });
    const res = await buildDir(ctx, []);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('Cannot mount secret needed: not found (give it with buildctl build --secret id=needed,src=FILE or env=VAR)');
    const missing = await buildDir(ctx, ['--secret', `id=needed,src=${path.join(env.tmp, 'nope')}`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`Cannot use --secret id=needed: cannot read ${path.join(env.tmp, 'nope')}`);
    await expectNothingLeft();
  }, 240_000);

  /** A build whose RUN holds both secrets and sleeps, by a buildctl the test can interrupt. */
  async function startSleepingBuild(name: string): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
    const ctx = await writeContext(path.join(env.tmp, name), {
      Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=secret,id=token --mount=type=secret,id=envtok,env=TOKEN sleep 600\n`,
    });
    const child = spawn(process.execPath, [
      path.join(REPO, 'dist', 'buildctl', 'main.js'), '--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--progress', 'plain', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`,
      '--secret', `id=token,src=${secretFile}`, '--secret', 'id=envtok,env=MY_TOKEN',
    ], { env: { PATH: process.env['PATH'], MY_TOKEN: envSecret }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await waitFor('the step to run', async () => ((await env.runcContainers()).length > 0 && stderr.includes('RUN --mount') ? true : undefined), 120_000);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    return { child, exited };
  }

  const secretsBase = (): string => SecretsDir.forDaemon(path.join(env.root, 'tmp')).base;

  test('while a step runs, its secrets are on the tmpfs only; a cancelled build leaves no container, secret file or socket', async () => {
    const { child, exited } = await startSleepingBuild('running-ctx');
    try {
      // the values are where the step reads them (the tmpfs), and nowhere under the root,
      // not even in the bundle's config.json, which holds the env secret and so is only a link
      expect((await filesHolding(secretsBase(), Buffer.from(fileSecret))).length).toBe(1);
      expect((await filesHolding(secretsBase(), Buffer.from(envSecret))).length).toBe(1);
      expect(await filesHolding(env.root, Buffer.from(fileSecret))).toEqual([]);
      expect(await filesHolding(env.root, Buffer.from(envSecret))).toEqual([]);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(1);
    await waitFor('the cancelled step to be cleaned up', async () => ((await env.runcContainers()).length === 0 ? true : undefined));
    await waitFor('the secrets dir to be removed', async () => ((await fsp.stat(secretsBase()).catch(() => 'gone')) === 'gone' ? true : undefined));
    await expectNothingLeft();
  }, 240_000);

  test('kill -9 of buildd during a step with secrets, then a restart: the secrets on the tmpfs are swept', async () => {
    const { child, exited } = await startSleepingBuild('killed-ctx');
    expect((await fsp.readdir(secretsBase())).length).toBe(1);
    env.daemon.process.kill('SIGKILL');
    expect(await exited).toBe(1);
    child.kill('SIGKILL');
    // what the killed daemon left is still there until a daemon with this root starts
    expect((await filesHolding(secretsBase(), Buffer.from(fileSecret))).length).toBe(1);
    await env.restart();
    await waitFor('the restarted daemon to sweep the secrets dir', async () => ((await fsp.stat(secretsBase()).catch(() => 'gone')) === 'gone' ? true : undefined));
    await expectNothingLeft();
    expect(await filesHolding(env.root, Buffer.from(fileSecret))).toEqual([]);
    expect(await filesHolding(env.root, Buffer.from(envSecret))).toEqual([]);
  }, 240_000);

  describe('ssh agent forwarding', () => {
    let agent: ChildProcess;
    let sock: string;
    let pub: string;

    beforeAll(async () => {
      const dir = path.join(env.tmp, 'ssh');
      await fsp.mkdir(dir, { mode: 0o700 });
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'buildd-test', '-f', path.join(dir, 'id')]);
      pub = (await fsp.readFile(path.join(dir, 'id.pub'), 'utf8')).trim();
      sock = path.join(dir, 'agent.sock');
      // -D: in the foreground, so the test owns the process and stops it
      agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
      await waitFor('ssh-agent to listen', async () => ((await fsp.stat(sock).catch(() => undefined))?.isSocket() ? true : undefined));
      await run('ssh-add', [path.join(dir, 'id')], { env: { SSH_AUTH_SOCK: sock, PATH: process.env['PATH'] } });
    });

    afterAll(async () => {
      if (agent && agent.exitCode === null) {
        const exited = new Promise((resolve) => agent.once('exit', resolve));
        agent.kill('SIGTERM');
        await exited;
      }
    });

    /**
     * busybox has no ssh client and its nc cannot open a unix socket, so the step runs the
     * host's own ssh-add, copied with its shared libraries and loader into the context: a real
     * agent client speaking the agent protocol through the relay.
     */
    async function sshTools(ctx: string): Promise<void> {
      const tools = path.join(ctx, 'sshtools');
      await fsp.mkdir(tools, { recursive: true });
      const { stdout } = await run('ldd', ['/usr/bin/ssh-add']);
      const libs = [...stdout.matchAll(/(\/\S+\.so[^\s]*)/g)].map((m) => m[1] as string);
      for (const lib of new Set(libs)) await fsp.copyFile(lib, path.join(tools, path.basename(lib)));
      await fsp.copyFile('/usr/bin/ssh-add', path.join(tools, 'ssh-add'));
      const loader = libs.find((l) => path.basename(l).startsWith('ld-linux')) as string;
      await fsp.writeFile(path.join(tools, 'ssh-add.sh'), `#!/bin/sh\nexec /sshtools/${path.basename(loader)} --library-path /sshtools /sshtools/ssh-add "$@"\n`, { mode: 0o755 });
    }

    test('--ssh default forwards the agent: ssh-add -L in the step lists the key; SSH_AUTH_SOCK is set; nothing is left', async () => {
      const ctx = path.join(env.tmp, 'ssh-ctx');
      await sshTools(ctx);
      await writeContext(ctx, {
        'key.pub': `${pub}\n`,
        Dockerfile: [
          `FROM ${env.busybox}`,
          'COPY sshtools /sshtools',
          'COPY key.pub /key.pub',
          `RUN --mount=type=ssh sh -c 'test "$SSH_AUTH_SOCK" = /run/buildkit/ssh_agent.0 && test "$(stat -c %a $SSH_AUTH_SOCK)" = 600 && /sshtools/ssh-add.sh -L > /agent.keys && grep -qF "$(cut -d" " -f2 /key.pub)" /agent.keys'`,
          `RUN --mount=type=ssh,id=other,target=/tmp/agent,mode=0666,uid=1000 sh -c 'test "$SSH_AUTH_SOCK" = /tmp/agent && stat -c "%a %u" /tmp/agent > /other.stat && SSH_AUTH_SOCK=/tmp/agent /sshtools/ssh-add.sh -l > /other.list'`,
          '',
        ].join('\n'),
      });
      const out = path.join(env.tmp, 'ssh-img.tar');
      const res = await buildDir(ctx, ['--ssh', 'default', '--ssh', `other=${sock}`, '--output', `type=oci,dest=${out}`], { SSH_AUTH_SOCK: sock });
      expect(res.stderr).not.toMatch(/ERROR/);
      expect(res.code).toBe(0);
      const files = await flatten(out);
      expect(files['agent.keys']?.sha256).toBe(sha256(`${pub}\n`));
      expect(files['other.stat']?.sha256).toBe(sha256('666 1000\n'));
      expect(files['other.list']?.type).toBe('file');
      expect(Object.keys(files).filter((f) => f === 'run' || f.startsWith('run/') || f === 'tmp/agent')).toEqual([]);
      await expectNothingLeft();
    }, 240_000);

    test('--ssh ID=KEYFILE loads the key into a private agent of buildctl, stopped after the build; a key with a passphrase is refused', async () => {
      const ctx = path.join(env.tmp, 'ssh-key-ctx');
      await sshTools(ctx);
      await writeContext(ctx, {
        'key.pub': `${pub}\n`,
        Dockerfile: [
          `FROM ${env.busybox}`,
          'COPY sshtools /sshtools',
          'COPY key.pub /key.pub',
          `RUN --mount=type=ssh,id=keyed sh -c '/sshtools/ssh-add.sh -L > /agent.keys && grep -qF "$(cut -d" " -f2 /key.pub)" /agent.keys'`,
          '',
        ].join('\n'),
      });
      // TMPDIR: buildctl's private agent lives in the test's temp dir
      const res = await buildDir(ctx, ['--ssh', `keyed=${path.join(env.tmp, 'ssh', 'id')}`], { TMPDIR: env.tmp });
      expect(res.stderr).not.toMatch(/ERROR/);
      expect(res.code).toBe(0);
      // buildctl's private agent and its socket are gone
      expect((await fsp.readdir(env.tmp)).filter((f) => f.startsWith('buildctl-ssh-'))).toEqual([]);

      const locked = path.join(env.tmp, 'ssh', 'locked');
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'a passphrase', '-f', locked]);
      const refused = await buildDir(ctx, ['--ssh', `keyed=${locked}`], { TMPDIR: env.tmp });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`Cannot use --ssh keyed: ssh-add cannot load ${locked}`);
      expect((await fsp.readdir(env.tmp)).filter((f) => f.startsWith('buildctl-ssh-'))).toEqual([]);
    }, 240_000);

    test('a required ssh mount without --ssh fails naming the id; an optional one mounts nothing', async () => {
      const ctx = await writeContext(path.join(env.tmp, 'ssh-required-ctx'), {
        Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=ssh,id=deploy,required=true true\n`,
      });
      const res = await buildDir(ctx, []);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('Cannot mount ssh agent deploy: not found (forward it with buildctl build --ssh deploy)');
      const optional = await writeContext(path.join(env.tmp, 'ssh-optional-ctx'), {
        Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=ssh sh -c 'test ! -e /run/buildkit/ssh_agent.0'\n`,
      });
      expect((await buildDir(optional, [])).code).toBe(0);
      await expectNothingLeft();
    }, 240_000);
  });
});
