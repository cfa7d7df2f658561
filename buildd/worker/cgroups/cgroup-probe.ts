import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { linuxResources, type StepLimits } from '../step-limits';

/** A probe cgroup is named so; one left by a daemon killed mid-probe is swept at the next start. */
export const PROBE_PREFIX = 'buildd-probe-';

/** One limit as a write to a cgroup file: what runc will write for a step. */
export interface LimitWrite {
  controller: 'memory' | 'pids' | 'cpu';
  file: string;
  value: string;
}

/** The files and values runc sets for `limits` on cgroup `version` (runc's own mapping). Pure. */
export function limitWrites(limits: StepLimits, version: 1 | 2): LimitWrite[] {
  const res = linuxResources(limits, { version, swapAccounting: false });
  const out: LimitWrite[] = [];
  if (res?.memory) out.push({ controller: 'memory', file: version === 1 ? 'memory.limit_in_bytes' : 'memory.max', value: String(res.memory.limit) });
  if (res?.pids) out.push({ controller: 'pids', file: 'pids.max', value: String(res.pids.limit) });
  if (res?.cpu) {
    out.push(
      version === 1
        ? { controller: 'cpu', file: 'cpu.cfs_quota_us', value: String(res.cpu.quota) }
        : { controller: 'cpu', file: 'cpu.max', value: `${res.cpu.quota} ${res.cpu.period}` },
    );
  }
  return out;
}

/**
 * Does for real what runc will do for a step under `dir`: creates a child cgroup, sets the
 * limits in it, and removes it. Resolves with what went wrong, in words, or undefined.
 */
export async function probeCgroupDir(dir: string, writes: readonly LimitWrite[], owner: string): Promise<string | undefined> {
  const child = path.join(dir, `${PROBE_PREFIX}${randomBytes(6).toString('hex')}`);
  try {
    await fsp.mkdir(child);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return `not writable by ${owner}`;
    return `cannot create a cgroup in it: ${(err as Error).message}`;
  }
  try {
    for (const w of writes) {
      try {
        await fsp.writeFile(path.join(child, w.file), w.value);
      } catch (err) {
        return `cannot set ${w.file} of a cgroup in it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      }
    }
    return undefined;
  } finally {
    // a probe left here (rmdir failed, or a kill) is removed by the start-up sweep
    await fsp.rmdir(child).catch(() => undefined);
  }
}
