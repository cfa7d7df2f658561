import { constants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { cleanAbsolute } from '../../../store/safe-path';
import type { StepLimits } from '../step-limits';
import { limitWrites, probeCgroupDir, type LimitWrite } from './cgroup-probe';
import { hostUidOfRoot, ownV2Cgroup, parseV1Hierarchies, type V1Hierarchy } from './cgroup-tables';

/** What of the host's cgroups a rootless daemon reads at start (a test gives a fake tree). */
export interface CgroupSystem {
  /** where the hierarchies are mounted: /sys/fs/cgroup */
  root: string;
  /** the texts of /proc/self/cgroup, /proc/self/mountinfo and /proc/self/uid_map */
  selfCgroup: string;
  mountinfo: string;
  uidMap: string;
}

export async function readCgroupSystem(root = '/sys/fs/cgroup'): Promise<CgroupSystem> {
  const [selfCgroup, mountinfo, uidMap] = await Promise.all(['/proc/self/cgroup', '/proc/self/mountinfo', '/proc/self/uid_map'].map((f) => fsp.readFile(f, 'utf8')));
  return { root, selfCgroup: selfCgroup as string, mountinfo: mountinfo as string, uidMap: uidMap as string };
}

/**
 * The cgroup parent of a rootless daemon's steps, checked by a real probe and ready: a step's
 * runc cgroupsPath is `<parent>/<container id>`. Lifecycle: made once at start, before the
 * first step, by `prepareRootlessCgroupParent`; `dirs` is what the start-up sweep looks in.
 */
export interface RootlessCgroupParent {
  version: 1 | 2;
  /** absolute, in cgroup terms (/buildd-1000, /user.slice/…/buildd.service) */
  parent: string;
  /** the parent's directory in each hierarchy runc joins (one on v2) */
  dirs: string[];
}

/** Name of the leaf a v2 daemon moves its cgroup's processes into (no internal processes). */
export const DAEMON_LEAF = 'buildd-daemon';

/**
 * Makes sure runc, started by this rootless daemon (root of a user namespace), can put each
 * step in a cgroup of its own under `parent` and set `limits` there, or throws
 * `failed-precondition` saying what is missing and what to do.
 *
 * cgroup v1 (no safe delegation by systemd): `parent` must be given, and exist and be owned by
 * the user in every hierarchy runc joins (with an explicit cgroupsPath runc fails a container
 * whose cgroup it cannot create in any of them, not just memory, pids and cpu).
 * cgroup v2: the subtree systemd delegates (Delegate=yes): `parent` defaults to buildd's own
 * cgroup and must contain it (a process moves only within a subtree the user may write); the
 * needed controllers must be in its cgroup.controllers, and are enabled in its
 * cgroup.subtree_control, after moving the processes of buildd's own cgroup into a leaf when
 * the parent is that cgroup (the "no internal processes" rule).
 */
export async function prepareRootlessCgroupParent(opts: { parent?: string; limits: StepLimits; system: CgroupSystem }): Promise<RootlessCgroupParent> {
  const { system, limits } = opts;
  const what = Object.values(limits).some((v) => v !== undefined) ? 'stepLimits' : 'cgroupParent';
  const fail = (msg: string): BuildError => new BuildError('failed-precondition', `Cannot start buildd --rootless with ${what}: ${msg}`);
  const hostUid = hostUidOfRoot(system.uidMap);
  const owner = hostUid === undefined ? 'the user who starts buildd --rootless' : `uid ${hostUid}`;
  const parent = opts.parent === undefined ? undefined : cleanAbsolute(opts.parent);
  const v2 = await fsp.access(path.join(system.root, 'cgroup.controllers')).then(() => true, () => false);
  if (v2) return prepareV2(parent, limitWrites(limits, 2), system, owner, fail);
  return prepareV1(parent, limitWrites(limits, 1), system, { owner, hostUid }, fail);
}

async function prepareV1(
  parent: string | undefined,
  writes: LimitWrite[],
  system: CgroupSystem,
  user: { owner: string; hostUid?: number },
  fail: (msg: string) => BuildError,
): Promise<RootlessCgroupParent> {
  const hierarchies = parseV1Hierarchies(system.mountinfo, system.root);
  if (hierarchies.length === 0) throw fail(`no cgroup v1 hierarchy is mounted under ${system.root}`);
  for (const w of writes) {
    if (!hierarchies.some((h) => h.controllers.includes(w.controller))) throw fail(`the host mounts no cgroup v1 hierarchy with the ${w.controller} controller under ${system.root}`);
  }
  const chownTo = user.hostUid === undefined ? 'USER' : String(user.hostUid);
  if (parent === undefined) {
    const example = `/buildd-${user.hostUid ?? 'USER'}`;
    throw fail(
      `on cgroup v1 the steps need a cgroup parent that ${user.owner} owns in every hierarchy runc joins; set "cgroupParent" in the config (e.g. ${JSON.stringify(example)}) ` +
        `and create it as root: ${delegateCommand(system.root, hierarchies, example, chownTo)}`,
    );
  }
  const problems: { h: V1Hierarchy; dir: string; problem: string }[] = [];
  for (const h of hierarchies) {
    const dir = path.join(h.dir, parent);
    const problem = await probeCgroupDir(dir, writes.filter((w) => h.controllers.includes(w.controller)), user.owner);
    if (problem !== undefined) problems.push({ h, dir, problem });
  }
  if (problems.length > 0) {
    throw fail(
      `cgroup parent ${parent} is not usable in ${problems.length} of the ${hierarchies.length} cgroup v1 hierarchies runc joins: ${problems.map((p) => `${p.dir} (${p.problem})`).join(', ')}; ` +
        `each must exist and be owned by ${user.owner}; as root: ${delegateCommand(system.root, problems.map((p) => p.h), parent, chownTo)}`,
    );
  }
  return { version: 1, parent, dirs: hierarchies.map((h) => path.join(h.dir, parent)) };
}

/** The shell line an operator runs as root to give the user `parent` in `hierarchies`. */
function delegateCommand(root: string, hierarchies: readonly V1Hierarchy[], parent: string, uid: string): string {
  const names = hierarchies.map((h) => path.relative(root, h.dir)).join(' ');
  return `for h in ${names}; do mkdir -p ${root}/$h${parent} && chown -R ${uid} ${root}/$h${parent}; done`;
}

async function prepareV2(parent: string | undefined, writes: LimitWrite[], system: CgroupSystem, owner: string, fail: (msg: string) => BuildError): Promise<RootlessCgroupParent> {
  const own = ownV2Cgroup(system.selfCgroup);
  if (own === undefined) throw fail("cannot find buildd's own cgroup: /proc/self/cgroup has no cgroup v2 line (0::)");
  const target = parent ?? own;
  if (!(target === own || own.startsWith(target === '/' ? '/' : `${target}/`))) {
    throw fail(
      `cgroup parent ${target} does not contain buildd's own cgroup ${own}; on cgroup v2 a rootless daemon can move its steps only within the subtree delegated to it: ` +
        'leave "cgroupParent" unset or name that cgroup or one of its parents the user owns',
    );
  }
  const dir = path.join(system.root, target);
  const delegateHint =
    'with systemd, delegate them to the user (as root: mkdir -p /etc/systemd/system/user@.service.d && ' +
    "printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload, then log in again) " +
    'and start buildd in a cgroup of its own (systemd-run --user -p Delegate=yes --unit buildd buildd --rootless)';
  const words = async (file: string): Promise<string[]> => (await fsp.readFile(path.join(dir, file), 'utf8').catch(() => '')).split(/\s+/).filter((w) => w.length > 0);
  const needed = writes.map((w) => w.controller);
  const available = await words('cgroup.controllers');
  const missing = needed.filter((c) => !available.includes(c));
  if (missing.length > 0) throw fail(`the ${missing.join(', ')} controller${missing.length > 1 ? 's are' : ' is'} not delegated to ${dir} (its cgroup.controllers: ${JSON.stringify(available.join(' '))}); ${delegateHint}`);
  for (const file of ['cgroup.procs', 'cgroup.subtree_control']) {
    const writable = await fsp.access(path.join(dir, file), constants.W_OK).then(() => true, () => false);
    if (!writable) throw fail(`${path.join(dir, file)} is not writable by ${owner}: the cgroup is not delegated to the user; ${delegateHint}`);
  }
  const enabled = await words('cgroup.subtree_control');
  const toEnable = needed.filter((c) => !enabled.includes(c));
  if (toEnable.length > 0) {
    const procs = await words('cgroup.procs');
    if (procs.length > 0) {
      if (target !== own) {
        throw fail(`cgroup parent ${target} has processes of its own, and cgroup v2 enables controllers for children only in a cgroup without any; name an empty cgroup above buildd's own (${own}) or leave "cgroupParent" unset`);
      }
      await evacuate(dir, procs, fail);
    }
    await fsp.writeFile(path.join(dir, 'cgroup.subtree_control'), toEnable.map((c) => `+${c}`).join(' ')).catch((err: NodeJS.ErrnoException) => {
      throw fail(`cannot enable ${toEnable.join(', ')} in ${path.join(dir, 'cgroup.subtree_control')}: ${err.code ?? err.message}; ${delegateHint}`);
    });
  }
  const problem = await probeCgroupDir(dir, writes, owner);
  if (problem !== undefined) throw fail(`cannot make the steps' cgroups in ${dir}: ${problem}; ${delegateHint}`);
  return { version: 2, parent: target, dirs: [dir] };
}

/**
 * Moves every process of cgroup `dir` (buildd, rootlesskit and whatever else the user started
 * in it) into its leaf DAEMON_LEAF, as rootlesskit's --evacuate-cgroup2 does, so that `dir` may
 * enable controllers for the steps' cgroups beside it.
 */
async function evacuate(dir: string, procs: readonly string[], fail: (msg: string) => BuildError): Promise<void> {
  const leaf = path.join(dir, DAEMON_LEAF);
  await fsp.mkdir(leaf).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw fail(`cannot create ${leaf} to move buildd's processes into: ${err.code ?? err.message}`);
  });
  for (const pid of procs) {
    // one pid per write, as the kernel takes them; one that exited meanwhile is gone anyway
    await fsp.writeFile(path.join(leaf, 'cgroup.procs'), pid).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ESRCH') throw fail(`cannot move process ${pid} into ${leaf}: ${err.code ?? err.message}`);
    });
  }
}

/**
 * The steps' cgroup parent of a rootless daemon with this config, prepared; undefined when the
 * config asks for neither stepLimits nor a cgroupParent (steps then get no cgroups of their
 * own, as runc skips those it is denied).
 */
export async function rootlessStepCgroups(config: { stepLimits?: StepLimits; cgroupParent?: string }, system?: CgroupSystem): Promise<RootlessCgroupParent | undefined> {
  const limits = config.stepLimits ?? {};
  if (config.cgroupParent === undefined && !Object.values(limits).some((v) => v !== undefined)) return undefined;
  return prepareRootlessCgroupParent({ parent: config.cgroupParent, limits, system: system ?? (await readCgroupSystem()) });
}
