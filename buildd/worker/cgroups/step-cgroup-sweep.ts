import { promises as fsp } from 'node:fs';
import type { Logger } from 'pino';
import * as path from 'node:path';
import { PROBE_PREFIX } from './cgroup-probe';

/** The executors' container ids (`buildd-` and 24 hex digits): a step's cgroup is named so. */
const STEP_CGROUP = /^buildd-[0-9a-f]{24}$/;

/** What `sweepStepCgroups` did. */
export interface SweptCgroups {
  /** cgroup directories removed */
  removed: string[];
  /** those that could not be removed, with why (a process still in one: EBUSY) */
  left: { dir: string; reason: string }[];
}

/**
 * Removes the step and probe cgroups a killed daemon left under its cgroup parent (`dirs`: the
 * parent's directory in each hierarchy). Call at start, after runc's own sweep deleted the
 * containers it knew (which removes theirs): what remains is a step whose runc was killed
 * before it saved its state, or a probe. A cgroup still holding a process is reported, not
 * touched. Only names buildd makes are looked at; anything else in the parent is not ours.
 */
export async function sweepStepCgroups(dirs: readonly string[]): Promise<SweptCgroups> {
  const out: SweptCgroups = { removed: [], left: [] };
  for (const dir of dirs) {
    const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory() || !(STEP_CGROUP.test(e.name) || e.name.startsWith(PROBE_PREFIX))) continue;
      const cg = path.join(dir, e.name);
      // a cgroup directory goes with rmdir, its control files and all
      await fsp.rmdir(cg).then(
        () => out.removed.push(cg),
        (err: NodeJS.ErrnoException) => out.left.push({ dir: cg, reason: err.code ?? err.message }),
      );
    }
  }
  return out;
}

/** sweepStepCgroups, with what it did in the daemon's log. */
export async function sweepLeftCgroups(dirs: readonly string[], logger: Logger): Promise<void> {
  const { removed, left } = await sweepStepCgroups(dirs);
  if (removed.length > 0) logger.warn({ cgroups: removed }, 'removed step cgroups left by a previous daemon');
  if (left.length > 0) logger.warn({ cgroups: left }, 'Cannot remove step cgroups left by a previous daemon: they are busy or not ours to remove');
}
