import * as path from 'node:path';

/**
 * The cgroup v1 subsystems runc (1.1, cgroupfs driver) joins a container to, wherever the host
 * mounts them. With an explicit cgroupsPath it must create the container's cgroup in every one
 * of them, even in a user namespace: a hierarchy it cannot write fails the container.
 */
export const RUNC_V1_SUBSYSTEMS: readonly string[] = [
  'cpuset', 'devices', 'memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'hugetlb', 'net_cls', 'net_prio', 'perf_event', 'freezer', 'rdma', 'name=systemd',
];

/** One mounted cgroup v1 hierarchy: its controllers and the directory runc uses for it. */
export interface V1Hierarchy {
  /** e.g. ['cpu', 'cpuacct'] or ['name=systemd'] */
  controllers: string[];
  /** `<cgroup root>/<mountpoint's base name>`, as runc computes it (/sys/fs/cgroup/memory) */
  dir: string;
}

/**
 * The cgroup v1 hierarchies of `/proc/self/mountinfo` that runc joins, one per mount point
 * (a hierarchy mounted twice counts once), rooted at `cgroupRoot` as runc does. Pure.
 */
export function parseV1Hierarchies(mountinfo: string, cgroupRoot: string): V1Hierarchy[] {
  const seen = new Set<string>();
  const out: V1Hierarchy[] = [];
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const [fstype, , superOptions] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' || fields[4] === undefined || superOptions === undefined) continue;
    const controllers = superOptions.split(',').filter((o) => RUNC_V1_SUBSYSTEMS.includes(o));
    const key = [...controllers].sort().join(',');
    if (controllers.length === 0 || seen.has(key)) continue;
    seen.add(key);
    out.push({ controllers, dir: path.join(cgroupRoot, path.basename(unescapeMountinfo(fields[4]))) });
  }
  return out;
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The cgroup v2 path of `/proc/self/cgroup` (its `0::/path` line), or undefined. Pure. */
export function ownV2Cgroup(selfCgroup: string): string | undefined {
  for (const line of selfCgroup.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3).trim() || '/';
  }
  return undefined;
}

/**
 * The host uid that uid 0 of our user namespace is (`/proc/self/uid_map`), which is the uid
 * that must own a delegated cgroup; undefined when 0 is not mapped. Pure.
 */
export function hostUidOfRoot(uidMap: string): number | undefined {
  for (const line of uidMap.split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === undefined || outside === undefined || count === undefined || Number.isNaN(count)) continue;
    if (inside <= 0 && 0 < inside + count) return outside - inside;
  }
  return undefined;
}
