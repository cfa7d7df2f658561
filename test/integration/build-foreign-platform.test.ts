import { execFile } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';
import { startBuildEnv, type BuildEnv } from '../helpers/build-env';

const run = promisify(execFile);
jest.setTimeout(180_000);

/**
 * A build for linux/arm64 on this amd64 machine: its RUN steps run under QEMU through the
 * emulator scripts/register-emulators.sh registered (binfmt_misc, F flag), `debug workers`
 * lists the platform, and a daemon that finds no emulator refuses such a build before any step
 * runs, naming the emulator and its package. The base is busybox:multi (linux/amd64 and
 * linux/arm64), pushed into the test's registry by scripts/multiarch-busybox.sh.
 */
const REPO = path.resolve(__dirname, '..', '..');
const HANDLER = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
let env: BuildEnv;
let multi: string;

beforeAll(async () => {
  if (!existsSync(HANDLER)) throw new Error(`${HANDLER} is not registered: run scripts/register-emulators.sh (scripts/install-system-deps.sh does)`);
  env = await startBuildEnv();
  await run('bash', [path.join(REPO, 'scripts', 'multiarch-busybox.sh'), env.registry.host]);
  multi = `${env.registry.host}/busybox:multi`;
});
afterAll(async () => {
  await env?.stop();
});

async function context(dockerfile: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(env.tmp, 'ctx-'));
  await fsp.writeFile(path.join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

test('debug workers lists linux/arm64 after the native platforms', async () => {
  const res = await env.buildctl(['debug', 'workers', '--format', 'json']);
  expect(res.code).toBe(0);
  const [worker] = JSON.parse(res.stdout) as Array<{ platforms: Array<{ os: string; architecture: string; variant?: string }> }>;
  const ids = (worker?.platforms ?? []).map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join('/'));
  expect(ids.slice(0, 2)).toEqual(['linux/amd64', 'linux/386']);
  expect(ids).toContain('linux/arm64');
});

test('a linux/arm64 build runs its RUN steps as aarch64 and makes an arm64 image', async () => {
  const ctx = await context(`FROM ${multi}\nRUN uname -m > /arch && busybox --help | head -1 > /banner\n`);
  const out = path.join(env.tmp, 'arm64-out');
  const res = await env.build(ctx, ['--opt', 'platform=linux/arm64', '--output', `type=local,dest=${out}`]);
  expect(res.stderr).toMatch(/DONE/);
  expect(res.code).toBe(0);
  expect((await fsp.readFile(path.join(out, 'arch'), 'utf8')).trim()).toBe('aarch64');
  // the binaries are the arm64 image's: ELF machine 0xb7 (aarch64) in the header
  const elf = await fsp.readFile(path.join(out, 'bin', 'busybox'));
  expect(elf.readUInt16LE(18)).toBe(0xb7);
  const pushed = `${env.registry.host}/arm64-only:1`;
  const push = await env.build(ctx, ['--opt', 'platform=linux/arm64', '--output', `type=image,name=${pushed},push=true,registry.insecure=true`]);
  expect(push.code).toBe(0);
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${pushed}`]);
  expect(JSON.parse(stdout)).toMatchObject({ os: 'linux', architecture: 'arm64' });
});

test('a base pinned by its index\'s digest is the platform\'s image, not the amd64 one', async () => {
  const res = await fetch(`http://${env.registry.host}/v2/busybox/manifests/multi`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
  const indexDigest = res.headers.get('docker-content-digest');
  expect(indexDigest).toMatch(/^sha256:[a-f0-9]{64}$/);
  const ctx = await context(`FROM ${env.registry.host}/busybox@${indexDigest}\nRUN uname -m > /arch\n`);
  const out = path.join(env.tmp, 'pinned-out');
  expect((await env.build(ctx, ['--opt', 'platform=linux/arm64', '--output', `type=local,dest=${out}`])).code).toBe(0);
  expect((await fsp.readFile(path.join(out, 'arch'), 'utf8')).trim()).toBe('aarch64');
  expect((await fsp.readFile(path.join(out, 'bin', 'busybox'))).readUInt16LE(18)).toBe(0xb7);
});

test('a single image of another platform is taken with BuildKit\'s InvalidBaseImagePlatform warning', async () => {
  const ctx = await context(`FROM ${env.busybox}\nRUN true\n`);
  const res = await env.build(ctx, ['--opt', 'platform=linux/arm64']);
  expect(res.stderr).toContain(`InvalidBaseImagePlatform: Base image ${env.busybox} was pulled with platform "linux/amd64", expected "linux/arm64" for current build`);
});

test('the same RUN on amd64 and arm64 are two steps, not one cached for both', async () => {
  const ctx = await context(`FROM ${multi}\nRUN uname -m > /arch\n`);
  const amd = path.join(env.tmp, 'amd-out');
  const arm = path.join(env.tmp, 'arm-out');
  expect((await env.build(ctx, ['--opt', 'platform=linux/amd64', '--output', `type=local,dest=${amd}`])).code).toBe(0);
  const second = await env.build(ctx, ['--opt', 'platform=linux/arm64', '--output', `type=local,dest=${arm}`]);
  expect(second.code).toBe(0);
  expect(second.stderr).not.toMatch(/RUN uname -m > \/arch\n#\d+ CACHED/);
  expect((await fsp.readFile(path.join(amd, 'arch'), 'utf8')).trim()).toBe('x86_64');
  expect((await fsp.readFile(path.join(arm, 'arch'), 'utf8')).trim()).toBe('aarch64');
});

describe('a daemon that finds no emulator', () => {
  let bare: TestDaemon;
  beforeAll(async () => {
    // its own mount namespace, with an empty binfmt_misc folder: the machine as one where
    // qemu-user-static was never registered (the kernel's handlers are not what it reads)
    bare = await startDaemon({
      builder: 'real',
      wrap: ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount -t tmpfs empty /proc/sys/fs/binfmt_misc && exec "$@"', 'sh'],
    });
  });
  afterAll(async () => {
    await bare?.stop();
  });
  const ctl = (args: string[]) => runBuildctl(['--addr', bare.addr, '--tlsdir', path.join(bare.certsDir as string, 'client'), ...args]);

  test('lists only what runs natively, and refuses an arm64 build before any step, naming the emulator and package', async () => {
    const workers = await ctl(['debug', 'workers']);
    expect(workers.stdout).toMatch(new RegExp(`${os.hostname()}\\s+linux/amd64,linux/386\\n`));
    const ctx = await context(`FROM ${multi}\nRUN echo should-not-run\n`);
    const res = await ctl(['build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', '--opt', 'platform=linux/arm64']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(
      "Cannot build for linux/arm64 on this linux/amd64 machine: no emulator registered for it in /proc/sys/fs/binfmt_misc (install Debian's qemu-user-static, which provides qemu-aarch64-static, and register it with the F flag: cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register)",
    );
    expect(res.stderr).not.toMatch(/RUN echo should-not-run/);
    // and the daemon serves the next build
    const next = await ctl(['build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--opt', 'platform=linux/amd64']);
    expect(next.code).toBe(0);
  });
});
