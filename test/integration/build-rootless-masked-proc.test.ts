import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, type RunResult, type TestDaemon } from '../helpers/daemon';
import { maskedProcPod, podInit, processesRunning } from '../helpers/masked-proc-pod';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { createRootlessUser, startRootlessDaemon, type RootlessUser } from '../helpers/rootless-daemon';
import { mountsUnder } from '../helpers/store-mounts';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(60_000);

const BUILDCTL = path.resolve(__dirname, '..', '..', 'dist', 'buildctl', 'main.js');

/**
 * buildd --rootless as deploy/kubernetes runs it: uid 1000 of a pod without a user namespace of
 * its own, whose /proc containerd masked. The pod is stood in for by new mount and PID
 * namespaces with containerd's masks (masked-proc-pod.ts) and the test's unprivileged user.
 * There the kernel refuses each step's fresh procfs; --oci-worker-no-process-sandbox runs the
 * steps in the daemon's PID namespace instead, and buildd kills what a step leaves behind.
 */
describe('buildd --rootless in a pod whose /proc is masked', () => {
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  let user: RootlessUser;
  const daemons: TestDaemon[] = [];

  const buildArgs = (daemon: TestDaemon, ctx: string): string[] => [
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
  ];
  const build = (daemon: TestDaemon, ctx: string, extra: string[] = []): Promise<RunResult> => runBuildctl([...buildArgs(daemon, ctx), ...extra]);

  const start = async (name: string, extraArgs: string[] = []): Promise<TestDaemon> => {
    const d = await startRootlessDaemon(user, { root: path.join(user.home, name), extraArgs, launcher: maskedProcPod });
    daemons.push(d);
    return d;
  };

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-masked-proc-'));
    // the user must reach its home below the temp dir
    await fsp.chmod(tmp, 0o755);
    registry = await startRegistry();
    ({ ref: busybox } = await pushBusyboxImage(registry.host));
    user = await createRootlessUser(path.join(tmp, 'home'));
  });

  afterAll(async () => {
    // everything is released first, whatever failed; the checks come after
    const codes = [];
    for (const d of daemons) codes.push(await d.stop().catch((err: Error) => err.message));
    await registry?.stop().catch(() => undefined);
    const removed = await user?.remove().then(
      () => 'removed',
      (err: Error) => err.message,
    );
    // the pod's mounts lived in its own mount namespace; none may show in the host's
    const left = tmp ? await mountsUnder(tmp) : [];
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    // SIGTERM reached each daemon as the pod's init; the user's processes all ended (userdel)
    expect({ codes, removed, left }).toEqual({ codes: daemons.map(() => 0), removed: user ? 'removed' : undefined, left: [] });
  });

  it('without --oci-worker-no-process-sandbox: warns at start, and a RUN fails saying which flag makes it run', async () => {
    const daemon = await start('root-sandbox');
    expect(daemon.stderr()).toMatch(/rootless: RUN steps will fail: the kernel refuses a new \/proc.*--oci-worker-no-process-sandbox/);
    const ctx = await writeContext(path.join(tmp, 'ctx-sandbox'), { Dockerfile: `FROM ${busybox}\nRUN echo made > /made\n` });
    const res = await build(daemon, ctx);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/mount.*proc.*operation not permitted.*start buildd with --oci-worker-no-process-sandbox/i);
  });

  it("with it: RUN steps run and see the daemon's processes, and what a step leaves in the background is killed when it ends", async () => {
    const daemon = await start('root-no-sandbox', ['--oci-worker-no-process-sandbox']);
    expect(daemon.stderr()).toContain('NoProcessSandbox is enabled');
    expect(daemon.stderr()).not.toContain('RUN steps will fail');
    const init = (await podInit(daemon.process)) as number;
    const ctx = await writeContext(path.join(tmp, 'ctx-no-sandbox'), {
      Dockerfile: [
        `FROM ${busybox}`,
        // the pod's init, buildd itself, is in the step's /proc: the trade-off of this mode
        'RUN echo made > /made && tr "\\0" " " < /proc/1/cmdline > /pid1',
        // an orphan in the step's session, and one in a session of its own; both hold stdout
        'RUN sleep 987651 & setsid sleep 987652 & echo started > /bg',
      ].join('\n'),
    });
    const out = path.join(tmp, 'out-no-sandbox');
    const res = await build(daemon, ctx, ['--output', `type=local,dest=${out}`]);
    expect({ code: res.code, stderr: res.code === 0 ? '' : `${res.stderr}\n${daemon.stderr()}` }).toEqual({ code: 0, stderr: '' });
    expect(await fsp.readFile(path.join(out, 'made'), 'utf8')).toBe('made\n');
    expect(await fsp.readFile(path.join(out, 'bg'), 'utf8')).toBe('started\n');
    expect(await fsp.readFile(path.join(out, 'pid1'), 'utf8')).toMatch(/buildd\/main\.js --rootless/);
    // the step ended once they were gone: nothing to wait for
    expect(await processesRunning(init, ['sleep', '987651'])).toEqual([]);
    expect(await processesRunning(init, ['sleep', '987652'])).toEqual([]);
    const workers = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'debug', 'workers', '-v']);
    expect(workers.stdout).toMatch(/org\.mobyproject\.buildkit\.worker\.oci\.process-mode:\s*no-sandbox/);
    expect(workers.stdout).toMatch(/Executor:\s*runc \(rootless, no process sandbox\)/);
  });

  it('with it: a cancelled step leaves none of its processes running', async () => {
    const daemon = daemons[daemons.length - 1] as TestDaemon;
    const init = (await podInit(daemon.process)) as number;
    const ctx = await writeContext(path.join(tmp, 'ctx-cancel'), { Dockerfile: `FROM ${busybox}\nRUN setsid sleep 987653 & sleep 987654\n` });
    const child = spawn(process.execPath, [BUILDCTL, ...buildArgs(daemon, ctx)], { stdio: ['ignore', 'ignore', 'ignore'] });
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the step to run', async () => ((await processesRunning(init, ['sleep', '987654'])).length > 0 && (await processesRunning(init, ['sleep', '987653'])).length > 0 ? true : undefined));
    } finally {
      // Ctrl-C: the session ends and the daemon cancels the build
      child.kill('SIGINT');
    }
    expect(await exit).not.toBe(0);
    await waitFor('the cancelled step to be gone', async () =>
      (await processesRunning(init, ['sleep', '987653'])).length + (await processesRunning(init, ['sleep', '987654'])).length === 0 ? true : undefined,
    );
  });
});
