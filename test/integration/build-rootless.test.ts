import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { flattenImage } from '../conformance/harness/flatten-image';
import { compareImages, formatDifference } from '../conformance/harness/image-compare';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, runBuildd, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { createRootlessUser, startRootlessDaemon, type RootlessUser } from '../helpers/rootless-daemon';
import { createSystemUser } from '../helpers/system-user';
import { mountsUnder } from '../helpers/store-mounts';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(240_000);

const run = promisify(execFile);

interface FileRow {
  uid?: number;
  gid?: number;
  type?: string;
  sha256?: string;
}

async function flatten(archive: string): Promise<Record<string, FileRow>> {
  return (await flattenImage(archive)).files;
}

/** Processes whose real uid is `uid` (the rootless daemon, rootlesskit, containers). */
async function processesOf(uid: number): Promise<number[]> {
  const out: number[] = [];
  for (const e of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const status = await fsp.readFile(`/proc/${e}/status`, 'utf8').catch(() => '');
    if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) === uid) out.push(Number(e));
  }
  return out;
}

/**
 * buildd --rootless started by an unprivileged user that the test creates (subordinate id
 * ranges, a home in the test's temp dir): the image it builds equals, file by file, the one a
 * root daemon builds from the same Dockerfile, owners of a RUN's chown, a whiteout and an
 * opaque directory included.
 */
describe('buildd --rootless', () => {
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  let user: RootlessUser;
  let rootless: TestDaemon | undefined;
  let rooted: TestDaemon | undefined;

  const build = (daemon: TestDaemon, ctx: string, extra: string[]): Promise<RunResult> =>
    runBuildctl([
      '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra,
    ]);

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-'));
    // the user must reach its home below the temp dir
    await fsp.chmod(tmp, 0o755);
    registry = await startRegistry();
    ({ ref: busybox } = await pushBusyboxImage(registry.host));
    user = await createRootlessUser(path.join(tmp, 'home'));
  });

  afterAll(async () => {
    // everything is released first, whatever failed; the checks come after
    const rootlessCode = await rootless?.stop().catch((err: Error) => err.message);
    await rooted?.stop().catch(() => undefined);
    await registry?.stop().catch(() => undefined);
    const leftProcesses = user ? await processesOf(user.uid) : [];
    // rootlesskit's state dir, made by the daemon in the user's temp dir (TMPDIR unset: /tmp)
    const leftState: string[] = [];
    for (const e of await fsp.readdir(os.tmpdir())) {
      if (!e.startsWith('buildd-rootlesskit-')) continue;
      const st = await fsp.stat(path.join(os.tmpdir(), e)).catch(() => undefined);
      if (st && user && st.uid === user.uid) leftState.push(e);
    }
    const removed = await user?.remove().then(
      () => 'removed',
      (err: Error) => err.message,
    );
    // rootless mounts live in rootlesskit's mount namespace; none may show in the host's
    const left = tmp ? await mountsUnder(tmp) : [];
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    // SIGTERM reached the daemon through rootlesskit: it stopped cleanly, and nothing of the user ran on
    expect({ rootlessCode, leftProcesses, leftState, removed, left }).toEqual({ rootlessCode: rootless ? 0 : undefined, leftProcesses: [], leftState: [], removed: user ? 'removed' : undefined, left: [] });
  });

  it('builds as an unprivileged user the same image as root, keeping in-container owners, whiteouts and opaque dirs', async () => {
    rootless = await startRootlessDaemon(user);
    expect(rootless.stderr()).toContain("rootless: RUN steps reach the network through a CNI bridge in buildd's own network namespace and slirp4netns (host loopback not reachable)");
    rooted = await startDaemon({ builder: 'real', root: path.join(tmp, 'root-daemon') });
    const ctx = await writeContext(path.join(tmp, 'ctx'), {
      Dockerfile: [
        `FROM ${busybox}`,
        'COPY hello.txt /hello.txt',
        'COPY --chown=7:8 hello.txt /srv/owned-copy.txt',
        'RUN echo made > /made && chown 4242:4343 /made && mkdir /d && chown 4242:4343 /d',
        // a whiteout of a base file, an opaque /var (its tmp from the base must stay gone)
        'RUN rm /etc/group && rm -rf /var && mkdir /var && echo new > /var/fresh',
        // a step as a user that exists only by number
        'USER 4242:4343',
        'RUN echo mine > /d/by-4242 && id -u > /d/uid',
      ].join('\n'),
      'hello.txt': 'hello from the context\n',
    });
    const outRootless = path.join(tmp, 'rootless.tar');
    const outRoot = path.join(tmp, 'root.tar');
    const a = await build(rootless, ctx, ['--output', `type=oci,dest=${outRootless}`]);
    // the client's output and the daemon's log on failure
    expect({ code: a.code, stderr: a.code === 0 ? '' : `${a.stderr}\n${rootless.stderr()}` }).toEqual({ code: 0, stderr: '' });
    expect(a.stderr).toContain('RUN echo made');
    const b = await build(rooted, ctx, ['--output', `type=oci,dest=${outRoot}`]);
    expect({ code: b.code, stderr: b.code === 0 ? '' : b.stderr }).toEqual({ code: 0, stderr: '' });

    const files = await flatten(outRootless);
    expect(files['made']).toMatchObject({ uid: 4242, gid: 4343 });
    expect(files['d/by-4242']).toMatchObject({ uid: 4242, gid: 4343 });
    expect(files['srv/owned-copy.txt']).toMatchObject({ uid: 7, gid: 8 });
    expect(files['hello.txt']).toMatchObject({ uid: 0, gid: 0 });
    expect(files['var/fresh']).toBeDefined();
    expect(files['var/tmp']).toBeUndefined();
    expect(files['etc/group']).toBeUndefined();
    expect(files['etc/passwd']).toBeDefined();

    expect((await compareImages(outRootless, outRoot)).map(formatDifference)).toEqual([]);
  });

  it('gives a RUN step of the default network an interface on the bridge besides loopback, and --network=none loopback only', async () => {
    rootless ??= await startRootlessDaemon(user);
    const ctx = await writeContext(path.join(tmp, 'ctx-net'), {
      Dockerfile: `FROM ${busybox}\nRUN ls /sys/class/net > /nets\nRUN --network=none ls /sys/class/net > /nets-none\n`,
    });
    const out = path.join(tmp, 'net.tar');
    const res = await build(rootless, ctx, ['--output', `type=oci,dest=${out}`]);
    expect({ code: res.code, stderr: res.code === 0 ? '' : `${res.stderr}\n${rootless.stderr()}` }).toEqual({ code: 0, stderr: '' });
    const files = await flatten(out);
    expect(files['nets']?.sha256).toBe(createHash('sha256').update('eth0\nlo\n').digest('hex'));
    expect(files['nets-none']?.sha256).toBe(createHash('sha256').update('lo\n').digest('hex'));
  });
});

describe('buildd --rootless refuses what cannot work', () => {
  it('exits 1 when started as root, saying to start it as the unprivileged user', async () => {
    const res = await runBuildd(['--rootless', '--addr', 'tcp://127.0.0.1:0', '--insecure-tcp', '--root', path.join(os.tmpdir(), 'buildd-never-made')]);
    expect(res).toMatchObject({
      code: 1,
      stderr: 'buildd: Cannot start buildd --rootless: it was started as root; start it as the unprivileged user whose namespaces it should use, or without --rootless\n',
    });
  });

  it('exits 1 for a user without subordinate uids, naming /etc/subuid and the usermod to run', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-nosub-'));
    await fsp.chmod(tmp, 0o755);
    const user = await createSystemUser(path.join(tmp, 'home'));
    try {
      // useradd may have given it ranges (SUB_UID_COUNT in login.defs): take them away
      const text = await fsp.readFile('/etc/subuid', 'utf8').catch(() => '');
      for (const f of text.split('\n').map((l) => l.trim().split(':'))) {
        if (f.length === 3 && f[0] === user.name) await run('usermod', ['--del-subuids', `${f[1]}-${Number(f[1]) + Number(f[2]) - 1}`, user.name]);
      }
      const res = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn('setpriv', ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', process.execPath, path.join(__dirname, '..', '..', 'dist', 'buildd', 'main.js'), '--rootless', '--addr', 'tcp://127.0.0.1:0', '--insecure-tcp'], {
          cwd: user.home,
          env: { PATH: process.env['PATH'], HOME: user.home, USER: user.name },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stderr }));
      });
      expect(res).toEqual({
        code: 1,
        stderr: `buildd: Cannot start buildd --rootless: /etc/subuid gives user ${user.name} 0 subordinate ids, it needs at least 65536 (as root: usermod --add-subuids 100000-165535 ${user.name})\n`,
      });
      // it stopped before making anything
      await expect(fsp.access(path.join(user.home, '.local'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await user.remove();
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('buildd --rootless after a kill -9 of the process the user started', () => {
  it('shuts down the daemon inside rootlesskit too, leaving no process of the user', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-kill-'));
    await fsp.chmod(tmp, 0o755);
    const user = await createRootlessUser(path.join(tmp, 'home'));
    let daemon: TestDaemon | undefined;
    try {
      daemon = await startRootlessDaemon(user);
      const started = daemon;
      started.process.kill('SIGKILL');
      await waitFor('the rootless daemon to exit', async () => ((await processesOf(user.uid)).length === 0 ? true : undefined), 60_000);
      expect(started.stderr()).toContain('rootless: the buildd process that started rootlesskit is gone; shutting down');
      expect(started.stderr()).toContain('buildd stopped');
    } finally {
      await daemon?.stop();
      // when the daemon outlived the kill (the failure this test is for), its orphans go by pid
      for (const pid of await processesOf(user.uid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await user.remove();
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});

