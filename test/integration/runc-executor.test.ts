import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { BuildError } from '../../solver/build-error';
import type { ExecRequest } from '../../buildd/worker/executor';
import { RuncExecutor } from '../../buildd/worker/runc-executor';
import { captureLogger } from '../helpers/capture-logger';
import { waitFor } from '../helpers/wait-for';

const execFileP = promisify(execFile);

/** The absolute path of `name` found through PATH, as the shell finds it. */
function onPath(name: string): string {
  return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' }).trim();
}
const RUNC = onPath('runc');
const BUSYBOX = onPath('busybox');

jest.setTimeout(60_000);

/** Collects what is written, optionally slowly (to exercise backpressure). */
class Collector extends Writable {
  private chunks: Buffer[] = [];
  constructor(private readonly slow = false) {
    super({ highWaterMark: 1024 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    if (this.slow) setImmediate(cb);
    else cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  get bytes(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }
}

/** A busybox rootfs with root and `app` (1000:1000, also in group `extra` 2000). */
async function makeRootfs(dir: string): Promise<void> {
  for (const d of ['bin', 'etc', 'root', 'tmp']) await fsp.mkdir(path.join(dir, d), { recursive: true });
  await fsp.copyFile(BUSYBOX, path.join(dir, 'bin/busybox'));
  await fsp.chmod(path.join(dir, 'bin/busybox'), 0o755);
  const { stdout } = await execFileP(BUSYBOX, ['--list']);
  for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox')) {
    await fsp.symlink('busybox', path.join(dir, 'bin', applet));
  }
  await fsp.writeFile(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await fsp.writeFile(path.join(dir, 'etc/group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
}

async function exists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}

describe('RuncExecutor (real runc)', () => {
  let tmp: string;
  let rootfs: string;
  let runcRoot: string;
  let stateDir: string;
  let executor: RuncExecutor;

  const request = (over: Partial<ExecRequest>): ExecRequest & { stdout: Collector; stderr: Collector } => ({
    rootfs,
    args: ['true'],
    env: [],
    cwd: '/',
    user: '',
    network: 'sandbox',
    ...over,
    stdout: over.stdout instanceof Collector ? over.stdout : new Collector(),
    stderr: over.stderr instanceof Collector ? over.stderr : new Collector(),
  });
  const sh = (script: string, over: Partial<ExecRequest> = {}): ExecRequest & { stdout: Collector; stderr: Collector } =>
    request({ args: ['/bin/sh', '-c', script], ...over });
  const runcList = async (): Promise<string[]> => {
    const { stdout } = await execFileP(RUNC, ['--root', runcRoot, 'list', '-q']);
    return stdout.split('\n').filter((l) => l.length > 0);
  };

  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-runc-'));
    rootfs = path.join(tmp, 'rootfs');
    runcRoot = path.join(tmp, 'runc');
    stateDir = path.join(tmp, 'bundles');
    await makeRootfs(rootfs);
    executor = new RuncExecutor({ runcRoot, stateDir, runcBinary: RUNC });
  });

  afterEach(async () => {
    await executor.close();
    // every test leaves no container and no bundle behind, whatever its outcome
    expect(await runcList()).toEqual([]);
    expect(await fsp.readdir(stateDir).catch(() => [])).toEqual([]);
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('streams stdout and stderr separately and resolves with exit code 0', async () => {
    const req = sh('echo hello; echo oops >&2');
    await expect(executor.run(req)).resolves.toEqual({ exitCode: 0 });
    expect(req.stdout.text).toBe('hello\n');
    expect(req.stderr.text).toBe('oops\n');
  });

  it('delivers large output to a slow destination completely (backpressure)', async () => {
    const req = sh("head -c 3000000 /dev/zero | tr '\\0' a", { stdout: new Collector(true) });
    await expect(executor.run(req)).resolves.toEqual({ exitCode: 0 });
    expect(req.stdout.bytes).toBe(3_000_000);
  });

  it('stops the container and rejects when the output destination fails', async () => {
    const broken = new Writable({ write: (_c, _e, cb) => cb(new Error('disk full')) });
    const req: ExecRequest = { ...sh('while true; do echo spam; done'), stdout: broken };
    await expect(executor.run(req)).rejects.toMatchObject({ code: 'internal', message: expect.stringContaining('disk full') });
  });

  it('resolves with a non-zero exit code of the process', async () => {
    await expect(executor.run(sh('exit 3'))).resolves.toEqual({ exitCode: 3 });
  });

  it('applies env, adds the default PATH, and uses cwd', async () => {
    await fsp.mkdir(path.join(rootfs, 'srv'));
    const req = sh('echo "$FOO|$PATH"; pwd', { env: ['FOO=bar'], cwd: '/srv' });
    await executor.run(req);
    expect(req.stdout.text).toBe('bar|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/srv\n');
  });

  it('creates a missing cwd inside the rootfs with 0755 owned by the user, and keeps it', async () => {
    const req = sh('pwd; touch here', { cwd: '/work/sub', user: 'app' });
    await expect(executor.run(req)).resolves.toEqual({ exitCode: 0 });
    expect(req.stdout.text).toBe('/work/sub\n');
    const st = await fsp.stat(path.join(rootfs, 'work/sub'));
    expect(st.mode & 0o7777).toBe(0o755);
    expect([st.uid, st.gid]).toEqual([1000, 1000]);
    expect(await exists(path.join(rootfs, 'work/sub/here'))).toBe(true);
  });

  it('creates the cwd through a symlink inside the rootfs, never on the host', async () => {
    // a name of this run only: the host path it must not create is checked before and after
    const elsewhere = `buildd-elsewhere-${randomBytes(6).toString('hex')}`;
    expect(await exists(`/${elsewhere}`)).toBe(false);
    await fsp.symlink(`/${elsewhere}`, path.join(rootfs, 'link'));
    const req = sh('pwd', { cwd: '/link/dir' });
    await expect(executor.run(req)).resolves.toEqual({ exitCode: 0 });
    expect(await exists(path.join(rootfs, elsewhere, 'dir'))).toBe(true);
    expect(await exists(`/${elsewhere}`)).toBe(false);
  });

  it('resolves users by name, number and name:group', async () => {
    const byName = sh('id -u; id -g; id -G', { user: 'app' });
    await executor.run(byName);
    expect(byName.stdout.text).toBe('1000\n1000\n1000 2000\n');
    const byNumber = sh('id -u; id -g', { user: '1000' });
    await executor.run(byNumber);
    expect(byNumber.stdout.text).toBe('1000\n1000\n');
    const withGroup = sh('id -u; id -g', { user: 'app:extra' });
    await executor.run(withGroup);
    expect(withGroup.stdout.text).toBe('1000\n2000\n');
    const files = sh('cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && echo readable', { user: 'app' });
    await executor.run(files);
    expect(files.stdout.text).toBe('readable\n');
    const root = sh('id -u; id -g', { user: '' });
    await executor.run(root);
    expect(root.stdout.text).toBe('0\n0\n');
  });

  it('rejects an unknown user with invalid-argument naming it, before starting anything', async () => {
    const err = await executor.run(sh('true', { user: 'ghost' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toContain('ghost');
  });

  it('never resolves users from the host through a hostile /etc/passwd symlink', async () => {
    // `daemon` exists on the host; through /proc/1/root the link would reach the host's file
    await fsp.rm(path.join(rootfs, 'etc/passwd'));
    await fsp.symlink('/proc/1/root/etc/passwd', path.join(rootfs, 'etc/passwd'));
    const err = await executor.run(sh('id -u', { user: 'daemon' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toContain('daemon');
  });

  it('reports a command that cannot be started as a BuildError naming it, not as an exit code', async () => {
    const req = request({ args: ['/bin/nope'] });
    const err = await executor.run(req).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toMatch(/^Cannot run \["\/bin\/nope"\]: .*\/bin\/nope.*no such file/);
  });

  it('gives the container its own network namespace with only loopback, and loopback up', async () => {
    const req = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ip -o link show lo; ping -c 1 -W 5 127.0.0.1 >/dev/null && echo ping-ok");
    await expect(executor.run(req)).resolves.toEqual({ exitCode: 0 });
    const lines = req.stdout.text.trim().split('\n');
    expect(lines[0]).toBe('lo');
    expect(lines[1]).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    expect(lines[2]).toBe('ping-ok');
    expect(lines).toHaveLength(3);
  });

  it('runs the process as pid 1 of its own pid namespace, with the given hostname and /etc files', async () => {
    const req = sh('echo $$; hostname; cat /etc/hostname; cat /etc/hosts; echo /proc/[0-9]*', { hostname: 'box' });
    await executor.run(req);
    expect(req.stdout.text).toBe('1\nbox\nbox\n127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n/proc/1\n');
  });

  it('mounts the /etc files read-only', async () => {
    const req = sh('echo x >> /etc/hosts');
    const { exitCode } = await executor.run(req);
    expect(exitCode).not.toBe(0);
    expect(req.stderr.text).toMatch(/[Rr]ead-only/);
  });

  it('removes the mount stubs runc created and restores the parent mtime', async () => {
    const old = new Date('2020-01-01T00:00:00Z');
    await fsp.utimes(path.join(rootfs, 'etc'), old, old);
    await fsp.utimes(rootfs, old, old);
    const before = (await fsp.readdir(rootfs)).sort();
    const req = sh('ls /proc/self >/dev/null && test -f /etc/hosts && test -d /sys/fs/cgroup && echo ok');
    await executor.run(req);
    expect(req.stdout.text).toBe('ok\n');
    expect((await fsp.readdir(rootfs)).sort()).toEqual(before);
    for (const f of ['hosts', 'resolv.conf', 'hostname']) expect(await exists(path.join(rootfs, 'etc', f))).toBe(false);
    expect((await fsp.stat(path.join(rootfs, 'etc'))).mtime).toEqual(old);
    expect((await fsp.stat(rootfs)).mtime).toEqual(old);
  });

  it('never restores times through a stub parent the step swapped for a symlink out of the rootfs', async () => {
    const old = new Date('2020-01-01T00:00:00Z');
    const hostTime = new Date('2001-01-01T00:00:00Z');
    await fsp.utimes(path.join(rootfs, 'etc'), old, old);
    // a host directory whose listing matches the rootfs's /etc, as an attacker would pick one
    const host = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-host-dir-'));
    try {
      for (const name of await fsp.readdir(path.join(rootfs, 'etc'))) await fsp.writeFile(path.join(host, name), '');
      await fsp.utimes(host, hostTime, hostTime);
      const req = sh(`mv /etc /etc.moved && ln -s ${host} /etc && echo swapped`);
      await executor.run(req);
      expect(req.stdout.text).toBe('swapped\n');
      expect((await fsp.stat(host)).mtime).toEqual(hostTime);
    } finally {
      await fsp.rm(host, { recursive: true, force: true });
    }
  });

  it('removes a stub parent directory (/etc) that runc had to create', async () => {
    await fsp.rm(path.join(rootfs, 'etc'), { recursive: true });
    const before = (await fsp.readdir(rootfs)).sort();
    const req = sh('cat /etc/hostname');
    await expect(executor.run(req)).resolves.toEqual({ exitCode: 0 });
    expect(req.stdout.text).toBe('buildkitsandbox\n');
    expect((await fsp.readdir(rootfs)).sort()).toEqual(before);
  });

  describe('mount stubs that cannot be removed (an append-only /etc: creating works, unlinking does not)', () => {
    const STUBS_MESSAGE = 'Cannot remove the mount stubs runc created, which would end up in the layer: /etc/hosts (unlink: EPERM), /etc/resolv.conf (unlink: EPERM), /etc/hostname (unlink: EPERM)';
    let log: ReturnType<typeof captureLogger>;
    beforeEach(async () => {
      await executor.close();
      log = captureLogger();
      executor = new RuncExecutor({ runcRoot, stateDir, runcBinary: RUNC, logger: log.logger });
      await execFileP('chattr', ['+a', path.join(rootfs, 'etc')]);
    });
    afterEach(async () => {
      await execFileP('chattr', ['-a', path.join(rootfs, 'etc')]);
    });

    it('fail a step that succeeded, naming each stub, and leave no container behind', async () => {
      await expect(executor.run(sh('true'))).rejects.toMatchObject({ code: 'internal', message: STUBS_MESSAGE });
      for (const f of ['hostname', 'hosts', 'resolv.conf']) expect(await exists(path.join(rootfs, 'etc', f))).toBe(true);
    });

    it('are logged as a warning when the step failed anyway, which keeps its exit code', async () => {
      await expect(executor.run(sh('exit 3', { id: 'exit-3' }))).resolves.toEqual({ exitCode: 3 });
      expect(log.at('warn')).toEqual([expect.objectContaining({ id: 'exit-3', exitCode: 3, err: STUBS_MESSAGE, msg: 'mount stubs left in the rootfs of a failed step' })]);
    });
  });

  it('warns, naming the containers left and why, when runc cannot list them at sweep', async () => {
    await executor.close();
    const log = captureLogger();
    // a runc that cannot be started: its list fails for real (spawn ENOENT)
    const missingRunc = path.join(tmp, 'no-such-runc');
    executor = new RuncExecutor({ runcRoot, stateDir, runcBinary: missingRunc, logger: log.logger });
    await fsp.mkdir(path.join(runcRoot, 'left-by-a-killed-daemon'), { recursive: true });
    await fsp.mkdir(path.join(stateDir, 'left-by-a-killed-daemon'), { recursive: true });
    await expect(executor.sweep()).resolves.toEqual([]);
    const reason = `could not run: spawn ${missingRunc} ENOENT`;
    expect(log.at('warn')).toEqual([
      expect.objectContaining({
        runcRoot,
        containers: ['left-by-a-killed-daemon'],
        reason,
        msg: `Cannot delete the containers a previous daemon left: runc list failed (${reason}); not deleted: left-by-a-killed-daemon`,
      }),
    ]);
    // the bundles are still swept
    expect(await fsp.readdir(stateDir)).toEqual([]);
    await fsp.rm(path.join(runcRoot, 'left-by-a-killed-daemon'), { recursive: true });
  });

  it('keeps a pre-existing mount target and what the step wrote', async () => {
    await fsp.writeFile(path.join(rootfs, 'etc/hosts'), '10.0.0.1 image-host\n');
    await executor.run(sh('echo data > /tmp/out'));
    expect(await fsp.readFile(path.join(rootfs, 'etc/hosts'), 'utf8')).toBe('10.0.0.1 image-host\n');
    expect(await fsp.readFile(path.join(rootfs, 'tmp/out'), 'utf8')).toBe('data\n');
  });

  it('kills a running container on abort with runc kill, removes it, and rejects with cancelled', async () => {
    await executor.close();
    const log = captureLogger();
    executor = new RuncExecutor({ runcRoot, stateDir, runcBinary: RUNC, logger: log.logger });
    const ac = new AbortController();
    const req = sh('echo started; exec sleep 1000', { signal: ac.signal, id: 'abort-me' });
    const running = executor.run(req);
    await waitFor('the container to start', async () => (req.stdout.text.includes('started') ? true : undefined));
    expect(await runcList()).toEqual(['abort-me']);
    const { stdout } = await execFileP(RUNC, ['--root', runcRoot, 'state', 'abort-me']);
    const pid = (JSON.parse(stdout) as { pid: number }).pid;
    expect(await exists(`/proc/${pid}`)).toBe(true);
    ac.abort();
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err).toMatchObject({ code: 'cancelled', message: 'Cannot run ["/bin/sh","-c","echo started; exec sleep 1000"]: the step was cancelled' });
    // the step's process is gone, its container and bundle removed, when run() settles
    expect(await exists(`/proc/${pid}`)).toBe(false);
    expect(await runcList()).toEqual([]);
    expect(await exists(path.join(stateDir, 'abort-me'))).toBe(false);
    // and runc kill did it: the fallback that kills runc itself after a deadline was not needed
    expect(log.lines.filter((l) => /did not exit after kill/.test(l.msg))).toEqual([]);
    expect(log.at('warn')).toEqual([]);
  });

  it('reports a process killed by a signal as 128+n', async () => {
    const req = sh('echo started; exec sleep 1000', { id: 'victim' });
    const running = executor.run(req);
    await waitFor('the container to start', async () => (req.stdout.text ? true : undefined));
    await execFileP(RUNC, ['--root', runcRoot, 'kill', 'victim', 'KILL']);
    await expect(running).resolves.toEqual({ exitCode: 137 });
  });

  it('cancels a container aborted while runc is still creating it', async () => {
    const ac = new AbortController();
    const running = executor.run(sh('exec sleep 1000', { signal: ac.signal }));
    // abort as soon as runc starts recording the container: it is being created, not yet running
    await waitFor('runc to create state', async () => ((await fsp.readdir(runcRoot).catch(() => [])).length > 0 ? true : undefined), 20_000);
    ac.abort();
    await expect(running).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('rejects at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(executor.run(sh('true', { signal: ac.signal }))).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('close() kills and deletes every running container and refuses new runs', async () => {
    const a = sh('echo started; exec sleep 1000');
    const b = sh('echo started; exec sleep 1000');
    const runs = [executor.run(a), executor.run(b)].map((p) => p.catch((e: unknown) => e));
    await waitFor('both containers to start', async () => (a.stdout.text && b.stdout.text ? true : undefined));
    await executor.close();
    for (const err of await Promise.all(runs)) expect(err).toMatchObject({ code: 'cancelled' });
    expect(await runcList()).toEqual([]);
    await expect(executor.run(sh('true'))).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('refuses a second run with an id that is in use, without touching the first', async () => {
    const ac = new AbortController();
    const first = sh('echo started; exec sleep 1000', { id: 'same', signal: ac.signal });
    const running = executor.run(first).catch((e: unknown) => e);
    await waitFor('the container to start', async () => (first.stdout.text ? true : undefined));
    await expect(executor.run(sh('true', { id: 'same' }))).rejects.toMatchObject({ code: 'invalid-argument' });
    expect(await runcList()).toEqual(['same']);
    ac.abort();
    expect(await running).toMatchObject({ code: 'cancelled' });
  });
});
