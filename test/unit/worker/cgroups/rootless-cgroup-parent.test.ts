import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { probeCgroupDir } from '../../../../buildd/worker/cgroups/cgroup-probe';
import { prepareRootlessCgroupParent, rootlessStepCgroups, type CgroupSystem } from '../../../../buildd/worker/cgroups/rootless-cgroup-parent';

/**
 * Fake cgroup trees in a temp dir (plain directories and files). What differs from a real
 * cgroupfs: a probe that wrote a limit file cannot rmdir its cgroup here, so its writes stay
 * visible for the test to read; the kernel's own checks (EACCES, EBUSY) are not there.
 */
const UID_MAP = '         0       1001          1\n         1     100000      65536\n';
const HIERARCHIES = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd'];

function v1Mountinfo(): string {
  return HIERARCHIES.map((h, i) => `${31 + i} 30 0:${28 + i} / /sys/fs/cgroup/${h} rw,relatime - cgroup cgroup rw,${h === 'systemd' ? 'name=systemd' : h}`).join('\n');
}

/** The probe cgroups under `dir` and the files written in each. */
async function probesUnder(dir: string): Promise<Record<string, string>[]> {
  const out: Record<string, string>[] = [];
  for (const e of await fsp.readdir(dir)) {
    if (!e.startsWith('buildd-probe-')) continue;
    const files: Record<string, string> = {};
    for (const f of await fsp.readdir(path.join(dir, e))) files[f] = await fsp.readFile(path.join(dir, e, f), 'utf8');
    out.push(files);
  }
  return out;
}

describe('prepareRootlessCgroupParent on cgroup v1', () => {
  let root: string;
  let system: CgroupSystem;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cg-v1-'));
    for (const h of HIERARCHIES) await fsp.mkdir(path.join(root, h));
    system = { root, selfCgroup: '9:name=systemd:/\n8:pids:/\n4:memory:/\n0::/\n', mountinfo: v1Mountinfo(), uidMap: UID_MAP };
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('refuses without a cgroupParent, saying to set one and how to make it', async () => {
    await expect(prepareRootlessCgroupParent({ limits: { pids: 20 }, system })).rejects.toMatchObject({
      code: 'failed-precondition',
      message:
        'Cannot start buildd --rootless with stepLimits: on cgroup v1 the steps need a cgroup parent that uid 1001 owns in every hierarchy runc joins; ' +
        'set "cgroupParent" in the config (e.g. "/buildd-1001") and create it as root: ' +
        `for h in ${HIERARCHIES.join(' ')}; do mkdir -p ${root}/$h/buildd-1001 && chown -R 1001 ${root}/$h/buildd-1001; done`,
    });
  });

  it('names each hierarchy where the parent is missing, and the command for just those', async () => {
    // what the task's first idea gives: the parent in memory and pids only
    for (const h of ['memory', 'pids']) await fsp.mkdir(path.join(root, h, 'buildd-1001'));
    const missing = HIERARCHIES.filter((h) => h !== 'memory' && h !== 'pids');
    await expect(prepareRootlessCgroupParent({ parent: '/buildd-1001', limits: { pids: 20, memoryBytes: 32 << 20 }, system })).rejects.toMatchObject({
      code: 'failed-precondition',
      message:
        `Cannot start buildd --rootless with stepLimits: cgroup parent /buildd-1001 is not usable in ${missing.length} of the 9 cgroup v1 hierarchies runc joins: ` +
        `${missing.map((h) => `${root}/${h}/buildd-1001 (missing)`).join(', ')}; each must exist and be owned by uid 1001; ` +
        `as root: for h in ${missing.join(' ')}; do mkdir -p ${root}/$h/buildd-1001 && chown -R 1001 ${root}/$h/buildd-1001; done`,
    });
  });

  it('refuses a limit whose controller no hierarchy has', async () => {
    system.mountinfo = v1Mountinfo().split('\n').filter((l) => !l.includes('rw,pids')).join('\n');
    await expect(prepareRootlessCgroupParent({ parent: '/buildd-1001', limits: { pids: 20 }, system })).rejects.toThrow(
      `Cannot start buildd --rootless with stepLimits: the host mounts no cgroup v1 hierarchy with the pids controller under ${root}`,
    );
  });

  it("accepts a parent in every hierarchy after a probe cgroup in each took the step's limits", async () => {
    for (const h of HIERARCHIES) await fsp.mkdir(path.join(root, h, 'buildd-1001'));
    const got = await prepareRootlessCgroupParent({ parent: '/buildd-1001/', limits: { pids: 20, memoryBytes: 32 << 20, cpus: 0.5 }, system });
    expect(got).toEqual({ version: 1, parent: '/buildd-1001', dirs: HIERARCHIES.map((h) => path.join(root, h, 'buildd-1001')) });
    expect(await probesUnder(path.join(root, 'memory', 'buildd-1001'))).toEqual([{ 'memory.limit_in_bytes': String(32 << 20) }]);
    expect(await probesUnder(path.join(root, 'pids', 'buildd-1001'))).toEqual([{ 'pids.max': '20' }]);
    expect(await probesUnder(path.join(root, 'cpu', 'buildd-1001'))).toEqual([{ 'cpu.cfs_quota_us': '50000' }]);
    // where nothing was written the probe is gone again
    expect(await fsp.readdir(path.join(root, 'devices', 'buildd-1001'))).toEqual([]);
  });

  it('leaves a daemon with neither stepLimits nor cgroupParent as it was: no cgroups of its own', async () => {
    await expect(rootlessStepCgroups({ stepLimits: {} }, system)).resolves.toBeUndefined();
    await expect(rootlessStepCgroups({}, system)).resolves.toBeUndefined();
  });
});

describe('probeCgroupDir', () => {
  it('says "not writable" where the user may not create a cgroup', async () => {
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cg-probe-'));
    try {
      await fsp.chmod(root, 0o555);
      const asRoot = process.getuid?.() === 0;
      // root ignores modes: be somebody else for the probe (the saved uid brings root back)
      if (asRoot) process.seteuid?.(65534);
      let res: string | undefined;
      try {
        res = await probeCgroupDir(root, [], 'uid 1001');
      } finally {
        if (asRoot) process.seteuid?.(0);
      }
      expect(res).toBe('not writable by uid 1001');
      expect(await probeCgroupDir(path.join(root, 'nope'), [], 'uid 1001')).toBe('missing');
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

describe('prepareRootlessCgroupParent on cgroup v2 (fake tree only: this host is cgroup v1)', () => {
  const OWN = '/user.slice/user-1001.slice/user@1001.service/app.slice/buildd.service';
  let root: string;
  let own: string;
  let system: CgroupSystem;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cg-v2-'));
    own = path.join(root, OWN);
    await fsp.mkdir(own, { recursive: true });
    await fsp.writeFile(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
    // systemd's Delegate=yes: the unit's cgroup gets the controllers, none enabled below it yet
    await fsp.writeFile(path.join(own, 'cgroup.controllers'), 'cpu memory pids\n');
    await fsp.writeFile(path.join(own, 'cgroup.subtree_control'), '');
    await fsp.writeFile(path.join(own, 'cgroup.procs'), '4242\n4243\n');
    await fsp.writeFile(path.join(path.dirname(own), 'cgroup.controllers'), 'cpu memory pids\n');
    await fsp.writeFile(path.join(path.dirname(own), 'cgroup.subtree_control'), 'cpu memory pids\n');
    await fsp.writeFile(path.join(path.dirname(own), 'cgroup.procs'), '');
    system = { root, selfCgroup: `0::${OWN}\n`, mountinfo: '25 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate', uidMap: UID_MAP };
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it("uses its own cgroup by default: moves its processes into a leaf, enables the controllers, probes the limits", async () => {
    const got = await prepareRootlessCgroupParent({ limits: { pids: 20, memoryBytes: 32 << 20, cpus: 1.5 }, system });
    expect(got).toEqual({ version: 2, parent: OWN, dirs: [own] });
    // the fake tree keeps the last pid written (the kernel takes one per write)
    expect(await fsp.readFile(path.join(own, 'buildd-daemon', 'cgroup.procs'), 'utf8')).toBe('4243');
    expect(await fsp.readFile(path.join(own, 'cgroup.subtree_control'), 'utf8')).toBe('+memory +pids +cpu');
    expect(await probesUnder(own)).toEqual([{ 'memory.max': String(32 << 20), 'pids.max': '20', 'cpu.max': '150000 100000' }]);
  });

  it('does not move anything when the controllers are enabled already (a parent above its own cgroup)', async () => {
    const parent = path.dirname(OWN);
    const got = await prepareRootlessCgroupParent({ parent, limits: { pids: 20 }, system });
    expect(got).toEqual({ version: 2, parent, dirs: [path.dirname(own)] });
    await expect(fsp.access(path.join(own, 'buildd-daemon'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fsp.readFile(path.join(path.dirname(own), 'cgroup.subtree_control'), 'utf8')).toBe('cpu memory pids\n');
  });

  it('names a controller that is not delegated', async () => {
    await fsp.writeFile(path.join(own, 'cgroup.controllers'), 'memory pids\n');
    await expect(prepareRootlessCgroupParent({ limits: { pids: 20, cpus: 1 }, system })).rejects.toMatchObject({
      code: 'failed-precondition',
      message: expect.stringMatching(new RegExp(`^Cannot start buildd --rootless with stepLimits: the cpu controller is not delegated to ${own} \\(its cgroup.controllers: "memory pids"\\); with systemd, delegate them`)),
    });
  });

  it('refuses a parent outside its own subtree, and one above it that has processes', async () => {
    await expect(prepareRootlessCgroupParent({ parent: '/buildd-1001', limits: { pids: 20 }, system })).rejects.toThrow(
      `Cannot start buildd --rootless with stepLimits: cgroup parent /buildd-1001 does not contain buildd's own cgroup ${OWN}`,
    );
    const parent = path.dirname(OWN);
    await fsp.writeFile(path.join(path.dirname(own), 'cgroup.subtree_control'), '');
    await fsp.writeFile(path.join(path.dirname(own), 'cgroup.procs'), '77\n');
    await expect(prepareRootlessCgroupParent({ parent, limits: { pids: 20 }, system })).rejects.toThrow(
      `Cannot start buildd --rootless with stepLimits: cgroup parent ${parent} has processes of its own, and cgroup v2 enables controllers for children only in a cgroup without any`,
    );
  });
});
