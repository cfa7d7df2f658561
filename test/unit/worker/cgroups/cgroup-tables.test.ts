import { hostUidOfRoot, ownV2Cgroup, parseV1Hierarchies } from '../../../../buildd/worker/cgroups/cgroup-tables';

/** this machine's mountinfo (hybrid: v1 controllers, an empty v2 beside them), plus a co-mount and a foreign named hierarchy */
const MOUNTINFO = [
  '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '38 30 0:35 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids',
  '39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
  '40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '41 30 0:38 / /sys/fs/cgroup/misc rw,relatime - cgroup cgroup rw,misc',
  '42 30 0:39 / /sys/fs/cgroup/elogind rw,relatime - cgroup cgroup rw,name=elogind',
  // the same memory hierarchy bind-mounted elsewhere counts once
  '43 22 0:31 / /mnt/mem\\040copy rw,relatime - cgroup cgroup rw,memory',
].join('\n');

describe('parseV1Hierarchies', () => {
  it("lists the hierarchies runc joins, under the cgroup root by their mount point's name", () => {
    expect(parseV1Hierarchies(MOUNTINFO, '/fake/cg')).toEqual([
      { controllers: ['cpu', 'cpuacct'], dir: '/fake/cg/cpu,cpuacct' },
      { controllers: ['memory'], dir: '/fake/cg/memory' },
      { controllers: ['pids'], dir: '/fake/cg/pids' },
      { controllers: ['name=systemd'], dir: '/fake/cg/systemd' },
    ]);
  });
  it('finds none on a v2-only host', () => {
    expect(parseV1Hierarchies('25 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate', '/sys/fs/cgroup')).toEqual([]);
  });
});

describe('ownV2Cgroup', () => {
  it('reads the 0:: line of /proc/self/cgroup', () => {
    expect(ownV2Cgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/buildd.service\n')).toBe('/user.slice/user-1000.slice/user@1000.service/app.slice/buildd.service');
    expect(ownV2Cgroup('9:name=systemd:/\n4:memory:/x\n0::/\n')).toBe('/');
    expect(ownV2Cgroup('4:memory:/x\n')).toBeUndefined();
  });
});

describe('hostUidOfRoot', () => {
  it("gives the host uid of the namespace's root", () => {
    expect(hostUidOfRoot('         0       1001          1\n         1     100000      65536\n')).toBe(1001);
    expect(hostUidOfRoot('         0          0 4294967295\n')).toBe(0);
    expect(hostUidOfRoot('      1000       1000          1\n')).toBeUndefined();
  });
});
