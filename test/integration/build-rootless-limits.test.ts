import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, type RunResult, type TestDaemon } from '../helpers/daemon';
import { delegateV1Cgroup, type DelegatedCgroup } from '../helpers/delegated-cgroup';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { createRootlessUser, startRootlessDaemon, type RootlessUser } from '../helpers/rootless-daemon';
import { waitFor } from '../helpers/wait-for';
import { detectCgroupHost } from '../../buildd/worker/step-limits';

jest.setTimeout(180_000);

const MEMORY = 32 * 1024 * 1024;
const PIDS = 24;

/** Where buildd --rootless is refused, the message it exits with (or how it started after all). */
async function startOutcome(user: RootlessUser, config: string): Promise<string> {
  return startRootlessDaemon(user, { extraArgs: ['--config', config] }).then(
    async (d) => `started (exit ${String(await d.stop())})`,
    (err: Error) => err.message,
  );
}

/**
 * buildd --rootless with stepLimits on a cgroup v1 host (this one): root gives the test's user
 * a cgroup parent in every v1 hierarchy, as the README tells an operator, and the steps of the
 * rootless daemon get their limits there. On a cgroup v2 host the same runs through systemd's
 * delegation instead, which this suite cannot set up: it is skipped there (unit tests cover
 * the v2 logic on fake trees).
 */
const onV1 = process.platform === 'linux' && process.getuid?.() === 0;
const describeV1 = onV1 ? describe : describe.skip;

describeV1('buildd --rootless with stepLimits under a delegated cgroup v1 parent', () => {
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  let user: RootlessUser;
  let cg: DelegatedCgroup | undefined;
  let daemon: TestDaemon | undefined;
  const leftover = 'buildd-0123456789abcdef01234567';

  const build = (ctx: string, out: string): Promise<RunResult> =>
    runBuildctl([
      '--addr', (daemon as TestDaemon).addr, '--tlsdir', path.join((daemon as TestDaemon).certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
      '--output', `type=oci,dest=${out}`,
    ]);

  beforeAll(async () => {
    if ((await detectCgroupHost()).version !== 1) throw new Error('this suite needs a cgroup v1 host');
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-limits-'));
    await fsp.chmod(tmp, 0o755);
    registry = await startRegistry();
    ({ ref: busybox } = await pushBusyboxImage(registry.host));
    user = await createRootlessUser(path.join(tmp, 'home'));
    cg = await delegateV1Cgroup(user.uid, user.gid, `/buildd-${user.name}`);
    // a step cgroup a killed daemon left (runc never saved its state): the start removes it
    for (const d of cg.dirs.filter((x) => /\/(memory|pids)\//.test(x))) {
      await fsp.mkdir(path.join(d, leftover));
      await fsp.chown(path.join(d, leftover), user.uid, user.gid);
    }
    const config = path.join(user.home, 'buildd.json');
    await fsp.writeFile(config, JSON.stringify({ stepLimits: { memory: '32m', pids: PIDS, cpus: 0.5 }, cgroupParent: cg.parent }));
    daemon = await startRootlessDaemon(user, { extraArgs: ['--config', config] });
  });

  afterAll(async () => {
    const code = await daemon?.stop().catch((err: Error) => err.message);
    await registry?.stop().catch(() => undefined);
    const left = (await cg?.remove()) ?? [];
    const removed = await user?.remove().then(() => 'removed', (err: Error) => err.message);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    // (c) no step cgroup outlived the daemon, which stopped cleanly
    expect({ code, left, removed }).toEqual({ code: 0, left: [], removed: 'removed' });
  });

  it('removed at start the step cgroups a previous daemon left', async () => {
    expect(daemon?.stderr()).toContain('removed step cgroups left by a previous daemon');
    expect(await (cg as DelegatedCgroup).children()).toEqual([]);
  });

  it('gives a RUN step its memory, pids and CPU limits, seen in its own cgroup', async () => {
    const ctx = await writeContext(path.join(tmp, 'ctx-limits'), {
      Dockerfile: [
        `FROM ${busybox}`,
        // the step's output reaches the client's progress: its lines say what the step saw
        'RUN read m < /sys/fs/cgroup/memory/memory.limit_in_bytes; read p < /sys/fs/cgroup/pids/pids.max; read q < /sys/fs/cgroup/cpu/cpu.cfs_quota_us; echo "limits=$m,$p,$q"; ' +
          `sh -c 'i=0; while [ $i -lt ${PIDS + 10} ]; do sleep 1000 & i=$((i+1)); done'; echo "spawner=$?"`,
      ].join('\n'),
    });
    const res = await build(ctx, path.join(tmp, 'limits.tar'));
    expect({ code: res.code, stderr: res.code === 0 ? '' : `${res.stderr}\n${daemon?.stderr()}` }).toEqual({ code: 0, stderr: '' });
    expect(res.stderr).toContain(`limits=${MEMORY},${PIDS},50000`);
    // the spawner died at its first failed fork: past the pids limit
    expect(res.stderr).toContain("can't fork: Resource temporarily unavailable");
    expect(res.stderr).toMatch(/spawner=[1-9]/);
  });

  it('kills a step that holds more memory than its limit, and the build fails on it', async () => {
    // tail -c keeps the last 100 MiB of its input in memory: above the 32 MiB limit. The hog
    // runs in a child shell that the OOM killer prefers (oom_score_adj 1000), so the step's own
    // shell lives on to say what happened (killed, it would exit 137 without a word).
    const ctx = await writeContext(path.join(tmp, 'ctx-oom'), { Dockerfile: `FROM ${busybox}\nRUN sh -c 'echo 1000 > /proc/self/oom_score_adj; head -c 200m /dev/zero | tail -c 100m > /dev/null'; s=$?; grep oom_kill /sys/fs/cgroup/memory/memory.oom_control; exit $s\n` });
    const res = await build(ctx, path.join(tmp, 'oom.tar'));
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('Killed');
    // the kernel counts the kill in the step's memory cgroup
    expect(res.stderr).toMatch(/oom_kill [1-9]/);
    expect(res.stderr).toContain('did not complete successfully: exit code: 137');
  });

  it("after a kill -9 of the daemon inside rootlesskit mid-step, the next start deletes the step's container and its cgroups", async () => {
    const ctx = await writeContext(path.join(tmp, 'ctx-kill'), { Dockerfile: `FROM ${busybox}\nRUN echo step-started; sleep 1000\n` });
    const building = build(ctx, path.join(tmp, 'kill.tar'));
    const c = cg as DelegatedCgroup;
    // the step runs once a process is in its pids cgroup
    const step = await waitFor('the step to run in its cgroup', async () => {
      for (const child of await c.children()) {
        if (!child.startsWith('pids/')) continue;
        const procs = await fsp.readFile(path.join('/sys/fs/cgroup', child, 'cgroup.procs'), 'utf8').catch(() => '');
        if (procs.trim().length > 0) return { child, procs: procs.trim().split('\n').map(Number) };
      }
      return undefined;
    }, 60_000);
    const inner = await innerDaemonPid(user.uid);
    process.kill(inner, 'SIGKILL');
    await building;
    const first = daemon as TestDaemon;
    daemon = undefined;
    expect(await first.stop()).not.toBe(0);
    // the step's processes outlived the daemon, in their cgroup
    expect((await c.children()).filter((x) => x === step.child)).toEqual([step.child]);
    daemon = await startRootlessDaemon(user, { root: first.root, extraArgs: ['--config', path.join(user.home, 'buildd.json')] });
    expect(daemon.stderr()).toContain('deleted containers left by a previous daemon');
    expect(await c.children()).toEqual([]);
    expect(step.procs.filter((pid) => alive(pid))).toEqual([]);
  });
});

/** The buildd that rootlesskit started for `uid` (node, BUILDD_ROOTLESS_CHILD=1 in its environment). */
async function innerDaemonPid(uid: number): Promise<number> {
  for (const e of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const status = await fsp.readFile(`/proc/${e}/status`, 'utf8').catch(() => '');
    if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) !== uid) continue;
    const argv = (await fsp.readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const env = (await fsp.readFile(`/proc/${e}/environ`, 'utf8').catch(() => '')).split('\0');
    if (argv[0] === process.execPath && env.includes('BUILDD_ROOTLESS_CHILD=1')) return Number(e);
  }
  throw new Error(`Cannot find the rootless buildd of uid ${uid}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describeV1('buildd --rootless with stepLimits refuses a cgroup parent it cannot use', () => {
  let tmp: string;
  let user: RootlessUser;
  let config: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-nolimits-'));
    await fsp.chmod(tmp, 0o755);
    user = await createRootlessUser(path.join(tmp, 'home'));
    config = path.join(user.home, 'buildd.json');
  });
  afterAll(async () => {
    await user?.remove();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('exits 1 without a cgroupParent, saying to set one and how to make it', async () => {
    await fsp.writeFile(config, JSON.stringify({ stepLimits: { pids: 64 } }));
    const outcome = await startOutcome(user, config);
    expect(outcome).toContain(
      `buildd: Cannot start buildd --rootless with stepLimits: on cgroup v1 the steps need a cgroup parent that uid ${user.uid} owns in every hierarchy runc joins; set "cgroupParent" in the config (e.g. "/buildd-${user.uid}") and create it as root: for h in `,
    );
  });

  it('exits 1 with a parent given in memory and pids only, naming the hierarchies where it is missing', async () => {
    const cg = await delegateV1Cgroup(user.uid, user.gid, `/buildd-${user.name}`, ['memory', 'pids']);
    try {
      await fsp.writeFile(config, JSON.stringify({ stepLimits: { pids: 64 }, cgroupParent: cg.parent }));
      const outcome = await startOutcome(user, config);
      expect(outcome).toMatch(
        new RegExp(`buildd: Cannot start buildd --rootless with stepLimits: cgroup parent ${cg.parent} is not usable in \\d+ of the \\d+ cgroup v1 hierarchies runc joins: .*/sys/fs/cgroup/cpuset${cg.parent} \\(missing\\)`),
      );
      expect(outcome).not.toContain(`/sys/fs/cgroup/memory${cg.parent} (`);
      // the probes went again
      expect(await cg.remove()).toEqual([]);
    } finally {
      await cg.remove();
    }
  });
});
