import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { mountsUnder } from '../helpers/store-mounts';
import { detectCgroupHost } from '../../buildd/worker/step-limits';

jest.setTimeout(120_000);

const run = promisify(execFile);

/** A file of the last layer of the one image in an OCI archive. */
async function readFromLastLayer(archive: string, name: string): Promise<string> {
  const blob = async (digest: string): Promise<string> => (await run('tar', ['-xOf', archive, `blobs/sha256/${digest.slice('sha256:'.length)}`], { maxBuffer: 16 * 1024 * 1024 })).stdout;
  const index = JSON.parse((await run('tar', ['-xOf', archive, 'index.json'])).stdout) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(await blob(index.manifests[0]?.digest as string)) as { layers: { digest: string }[] };
  const layer = manifest.layers[manifest.layers.length - 1]?.digest as string;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-iso-layer-'));
  try {
    await run('tar', ['-xOf', archive, `blobs/sha256/${layer.slice('sha256:'.length)}`], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }).then(({ stdout }) =>
      fsp.writeFile(path.join(dir, 'layer'), stdout),
    );
    return (await run('tar', ['-xzOf', path.join(dir, 'layer'), name])).stdout;
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * A RUN step through the real daemon, started with `stepLimits` in its config and also
 * listening on a unix socket: the step sees its limits and none of the daemon's state.
 */
describe('RUN step isolation through the daemon', () => {
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  let daemon: TestDaemon;
  let socket: string;
  // the steps' cgroups go under it (runc makes it in each hierarchy); removed after
  const cgroupParent = `/buildd-iso-${process.pid}`;
  const parentDirs = async (): Promise<string[]> => {
    const dirs = [path.join('/sys/fs/cgroup', cgroupParent)];
    for (const h of await fsp.readdir('/sys/fs/cgroup').catch(() => [])) dirs.push(path.join('/sys/fs/cgroup', h, cgroupParent));
    const out: string[] = [];
    for (const d of dirs) if (await fsp.stat(d).then((st) => st.isDirectory(), () => false)) out.push(d);
    return out;
  };

  const build = (ctx: string, extra: string[]): Promise<RunResult> =>
    runBuildctl([
      '--addr',
      daemon.addr,
      '--tlsdir',
      path.join(daemon.certsDir as string, 'client'),
      'build',
      '--frontend',
      'dockerfile.v0',
      '--local',
      `context=${ctx}`,
      '--local',
      `dockerfile=${ctx}`,
      '--progress',
      'plain',
      ...extra,
    ]);

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-iso-e2e-'));
    registry = await startRegistry();
    ({ ref: busybox } = await pushBusyboxImage(registry.host));
    const config = path.join(tmp, 'buildd.json');
    await fsp.writeFile(config, JSON.stringify({ stepLimits: { memory: '96m', pids: 64, cpus: 0.5 }, cgroupParent }));
    socket = path.join(tmp, 'buildd.sock');
    daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root'), extraArgs: ['--config', config, '--addr', `unix://${socket}`] });
  });

  afterAll(async () => {
    await daemon?.stop();
    await registry?.stop();
    for (const d of await parentDirs()) await fsp.rmdir(d);
    const left = await mountsUnder(path.join(tmp, 'root'));
    await fsp.rm(tmp, { recursive: true, force: true });
    expect(left).toEqual([]);
  });

  it("applies the config's stepLimits under its cgroupParent and Docker's confinement, and shows the step neither buildd's root nor its socket", async () => {
    await fsp.access(socket);
    const cg = await detectCgroupHost();
    const limits =
      cg.version === 1
        ? 'read m < /sys/fs/cgroup/memory/memory.limit_in_bytes; read p < /sys/fs/cgroup/pids/pids.max; read q < /sys/fs/cgroup/cpu/cpu.cfs_quota_us'
        : 'read m < /sys/fs/cgroup/memory.max; read p < /sys/fs/cgroup/pids.max; read q rest < /sys/fs/cgroup/cpu.max';
    const root = daemon.root;
    const ctx = await writeContext(path.join(tmp, 'ctx'), {
      Dockerfile: [
        `FROM ${busybox}`,
        `RUN ${limits}; echo "limits $m $p $q" > /report; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status >> /report; ` +
          `for p in ${root} ${root}/runc ${socket} ${path.dirname(socket)}; do if [ -e "$p" ]; then echo "visible $p" >> /report; fi; done; ` +
          `find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print >> /report`,
      ].join('\n'),
    });
    const out = path.join(tmp, 'out.tar');
    const res = await build(ctx, ['--output', `type=oci,dest=${out}`]);
    expect(res.stderr).toContain('RUN read m');
    expect(res.code).toBe(0);
    // no "visible …" line and no socket anywhere in the step's filesystem
    expect(await readFromLastLayer(out, 'report')).toBe(`limits ${96 * 1024 * 1024} 64 50000\nNoNewPrivs:\t1\nSeccomp:\t2\n`);
    // the step's cgroup was under the config's cgroupParent
    expect((await parentDirs()).length).toBeGreaterThan(0);
  });

  it.each([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])('fails WORKDIR /proc/self/fd/%i with RUN cat ../../../etc/hostname, naming the working directory', async (n) => {
    const ctx = await writeContext(path.join(tmp, `workdir-${n}`), {
      Dockerfile: `FROM ${busybox}\nWORKDIR /proc/self/fd/${n}\nRUN cat ../../../etc/hostname > /leaked\n`,
    });
    const res = await build(ctx, ['--output', `type=oci,dest=${path.join(tmp, `never-${n}.tar`)}`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`Cannot use working directory /proc/self/fd/${n}: it is inside /proc, whose entries can lead outside the container`);
    await expect(fsp.access(path.join(tmp, `never-${n}.tar`))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
