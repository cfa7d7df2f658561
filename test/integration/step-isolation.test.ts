import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import type { ExecRequest } from '../../buildd/worker/executor';
import { writeEtcFiles } from '../../buildd/worker/etc-files';
import { buildOciSpec } from '../../buildd/worker/oci-spec';
import { RuncExecutor } from '../../buildd/worker/runc-executor';
import { detectCgroupHost, type CgroupHost } from '../../buildd/worker/step-limits';
import { makeBusyboxRootfs } from '../helpers/busybox-image';

const execFileP = promisify(execFile);
const RUNC = execFileSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).trim();

jest.setTimeout(60_000);

class Collector extends Writable {
  private chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

const MEMORY = 64 * 1024 * 1024;
const PIDS = 16;

/**
 * What a RUN step may do by default, checked inside real runc containers started by the
 * executor: Docker's seccomp profile, masked and read-only /proc paths, no_new_privileges,
 * the daemon's cgroup limits, and no working directory through /proc's magic links.
 */
describe('RUN step isolation (real runc)', () => {
  let tmp: string;
  let rootfs: string;
  let runcRoot: string;
  let executor: RuncExecutor;
  let cgroups: CgroupHost;

  const run = async (script: string, over: Partial<ExecRequest> = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> => {
    const stdout = new Collector();
    const stderr = new Collector();
    const { exitCode } = await executor.run({ rootfs, args: ['/bin/sh', '-c', script], env: [], cwd: '/', user: '', network: 'none', ...over, stdout, stderr });
    return { exitCode, stdout: stdout.text, stderr: stderr.text };
  };

  /** runc run of buildOciSpec's spec for `script`, with `edit` applied: to show what a part of the spec does */
  const runSpec = async (
    script: string,
    edit: (spec: ReturnType<typeof buildOciSpec>) => void,
    security: 'sandbox' | 'insecure' = 'sandbox',
  ): Promise<{ code: number; output: string }> => {
    const id = `iso-${randomBytes(6).toString('hex')}`;
    const bundle = path.join(tmp, 'manual', id);
    await fsp.mkdir(bundle, { recursive: true });
    const spec = buildOciSpec({
      rootfs,
      args: ['/bin/sh', '-c', script],
      env: [],
      cwd: '/',
      user: { uid: 0, gid: 0, additionalGids: [] },
      hostname: 'buildd',
      cgroupsPath: `/buildd/${id}`,
      etcFiles: await writeEtcFiles(bundle, 'buildd', '/etc/resolv.conf'),
      security,
    });
    edit(spec);
    await fsp.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec));
    try {
      const { stdout, stderr } = await execFileP(RUNC, ['--root', runcRoot, 'run', '--bundle', bundle, id]);
      return { code: 0, output: stdout + stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, output: e.stdout + e.stderr };
    } finally {
      await execFileP(RUNC, ['--root', runcRoot, 'delete', '--force', id]).catch(() => undefined);
    }
  };

  beforeAll(async () => {
    cgroups = await detectCgroupHost();
  });

  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-iso-'));
    rootfs = path.join(tmp, 'rootfs');
    runcRoot = path.join(tmp, 'runc');
    await makeBusyboxRootfs(rootfs);
    executor = new RuncExecutor({ runcRoot, stateDir: path.join(tmp, 'bundles'), runcBinary: RUNC, stepLimits: { memoryBytes: MEMORY, pids: PIDS, cpus: 1.5 } });
  });

  afterEach(async () => {
    await executor.close();
    const { stdout } = await execFileP(RUNC, ['--root', runcRoot, 'list', '-q']);
    expect(stdout.trim()).toBe('');
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  describe('seccomp', () => {
    it('runs the step under a filter with no_new_privileges', async () => {
      const r = await run('grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status');
      expect(r.stdout).toBe('NoNewPrivs:\t1\nSeccomp:\t2\n');
    });

    it('fails unshare of a user namespace with EPERM, which the same container without the profile allows', async () => {
      const script = 'unshare -U true && echo unshared';
      const r = await run(script);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('unshare: unshare(0x10000000): Operation not permitted\n');
      expect(r.exitCode).toBe(1);
      // the same spec, seccomp section removed: no capability stands in the way, so the profile is what blocks it
      const without = await runSpec(script, (spec) => delete spec.linux.seccomp);
      expect(without).toEqual({ code: 0, output: 'unshared\n' });
      const withIt = await runSpec(script, () => undefined);
      expect(withIt.code).toBe(1);
      expect(withIt.output).toContain('Operation not permitted');
    });

    it("runs an insecure spec (RUN --security=insecure) with the daemon's capabilities and no filter", async () => {
      const own = /^CapEff:\s*(\S+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
      const r = await runSpec('grep -E "^(CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; unshare -U true && echo unshared', () => undefined, 'insecure');
      expect(r).toEqual({ code: 0, output: `CapBnd:\t${own}\nNoNewPrivs:\t0\nSeccomp:\t0\nunshared\n` });
    });

    it('fails mount without CAP_SYS_ADMIN', async () => {
      const r = await run('mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted');
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('mount: permission denied');
      expect(r.exitCode).not.toBe(0);
    });
  });

  describe('masked and read-only paths', () => {
    it('masks kernel files (they read empty) and directories (they list empty)', async () => {
      const r = await run('for f in /proc/keys /proc/timer_list /proc/interrupts; do echo "$f $(wc -c < $f)"; done; ls -A /proc/acpi /sys/firmware; cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable; true');
      expect(r.stdout).toBe('/proc/keys 0\n/proc/timer_list 0\n/proc/interrupts 0\n/proc/acpi:\n\n/sys/firmware:\n');
      // and the host really has something there, else masking would prove nothing
      expect(readFileSync('/proc/interrupts', 'utf8').length).toBeGreaterThan(0);
    });

    it('refuses writes to /proc/sys and the other read-only paths', async () => {
      const r = await run('echo evil > /proc/sys/kernel/domainname; echo "rc=$?"; read d < /proc/sys/kernel/domainname; echo "now=$d"');
      expect(r.stderr).toBe("/bin/sh: can't create /proc/sys/kernel/domainname: Read-only file system\n");
      expect(r.stdout).toMatch(/^rc=1\nnow=(?!evil)/);
    });
  });

  describe('cgroup limits', () => {
    const file = (v1: string, v2: string): string => (cgroups.version === 1 ? `/sys/fs/cgroup/${v1}` : `/sys/fs/cgroup/${v2}`);

    it("shows the daemon's memory, pids and CPU limits in the step's own cgroup", async () => {
      const mem = file('memory/memory.limit_in_bytes', 'memory.max');
      const pids = file('pids/pids.max', 'pids.max');
      const cpu = cgroups.version === 1 ? 'read q < /sys/fs/cgroup/cpu/cpu.cfs_quota_us; read p < /sys/fs/cgroup/cpu/cpu.cfs_period_us' : 'read q p < /sys/fs/cgroup/cpu.max';
      const r = await run(`read m < ${mem}; read n < ${pids}; ${cpu}; echo "$m $n $q $p"`);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`${MEMORY} ${PIDS} 150000 100000\n`);
    });

    it('stops a fork bomb at pids.max: spawning 10 more sleeps than allowed fails, and no more run', async () => {
      const pidsMax = file('pids/pids.max', 'pids.max');
      const current = file('pids/pids.current', 'pids.current');
      // the spawner dies at its first failed fork; builtins (read, echo >) need none
      const r = await run(
        `sh -c 'i=0; while [ $i -lt ${PIDS + 10} ]; do sleep 1000 & i=$((i+1)); echo $i > /tmp/started; done' 2>/tmp/err; ` +
          `echo "spawner=$?"; read s < /tmp/started; read c < ${current}; read m < ${pidsMax}; read e < /tmp/err; echo "started=$s current=$c max=$m"; echo "$e"`,
      );
      const m = /^spawner=(\d+)\nstarted=(\d+) current=(\d+) max=(\d+)\n(.*)\n$/.exec(r.stdout);
      expect(m).not.toBeNull();
      const [, spawner, started, cur, max] = (m as RegExpExecArray).map(Number);
      expect(spawner).not.toBe(0);
      expect((m as RegExpExecArray)[5]).toBe("sh: can't fork: Resource temporarily unavailable");
      expect(max).toBe(PIDS);
      expect(started).toBeLessThan(PIDS);
      expect(cur).toBeLessThanOrEqual(PIDS);
    });

    it('kills a step that holds more memory than its limit', async () => {
      // tail -c keeps the last 100 MiB of its input in memory: above the 64 MiB limit
      const r = await run('head -c 200m /dev/zero | tail -c 100m | wc -c');
      expect(r.stdout.trim()).toBe('0');
      expect(r.stderr).toContain('Killed');
      const small = await run('head -c 20m /dev/zero | tail -c 10m | wc -c');
      expect(small.stdout.trim()).toBe(String(10 * 1024 * 1024));
    });
  });

  describe('WORKDIR through /proc magic links (runc CVE-2024-21626)', () => {
    const hostHostname = readFileSync('/etc/hostname', 'utf8').trim();

    it.each([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])('refuses /proc/self/fd/%i before runc starts, and reads nothing of the host', async (n) => {
      const cwd = `/proc/self/fd/${n}`;
      const stdout = new Collector();
      const stderr = new Collector();
      await expect(
        executor.run({ rootfs, args: ['/bin/sh', '-c', 'cat ../../../etc/hostname; ls ../../..'], env: [], cwd, user: '', network: 'none', stdout, stderr }),
      ).rejects.toMatchObject({
        code: 'invalid-argument',
        message: `Cannot use working directory ${cwd}: it is inside /proc, whose entries can lead outside the container`,
      });
      expect(stdout.text).toBe('');
      if (hostHostname.length > 0) expect(stdout.text + stderr.text).not.toContain(hostHostname);
      // nothing was created for it in the rootfs (it would end up in the layer)
      expect(await fsp.readdir(path.join(rootfs))).not.toContain('proc');
    });

    it('refuses the same through a symlink of the image and through /dev/fd', async () => {
      await fsp.symlink('/proc/self/fd/7', path.join(rootfs, 'w'));
      await expect(run('pwd', { cwd: '/w' })).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringContaining('it resolves to /proc/self/fd/7') });
      await expect(run('pwd', { cwd: '/dev/fd/7' })).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringContaining('it is inside /dev/fd') });
    });
  });
});
