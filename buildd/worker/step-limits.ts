import { promises as fsp } from 'node:fs';
import { z } from 'zod';

/**
 * Per-step cgroup limits from the daemon's config (`stepLimits`), applied to every RUN
 * container. BuildKit has none by default (only a cgroup parent); absent keys mean no limit.
 */
export interface StepLimits {
  /** bytes of memory (RAM, and no swap beyond it where the kernel accounts swap) */
  memoryBytes?: number;
  /** processes and threads at once */
  pids?: number;
  /** CPUs' worth of time per period, e.g. 1.5 */
  cpus?: number;
}

/** runc's `linux.resources` (OCI runtime spec): the same on cgroup v1 and v2, runc maps it. */
export interface OciResources {
  memory?: { limit: number; swap?: number };
  pids?: { limit: number };
  cpu?: { quota: number; period: number };
}

/** What of the host's cgroups matters to the spec. */
export interface CgroupHost {
  version: 1 | 2;
  /**
   * whether a swap limit can be set: on v1 only where memory.memsw.* exists (runc fails the
   * container otherwise); on v2 always (runc skips a swap.max of 0 where swap is off)
   */
  swapAccounting: boolean;
}

/** Docker's smallest memory limit: below it a container cannot even start its process. */
const MIN_MEMORY_BYTES = 6 * 1024 * 1024;
/** the CFS period runc and Docker use by default, in microseconds */
const CPU_PERIOD_US = 100_000;
const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * A memory size as Docker takes it (`--memory 2g`): a number of bytes, or digits with an
 * optional binary unit b, k, m, g, t (also kb, kib, …; any case).
 */
export function parseMemorySize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(value);
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * (UNITS[(m[2] as string).toLowerCase()] as number));
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** `stepLimits` in the config file: `{ "memory": "2g", "pids": 4096, "cpus": 1.5 }`. */
export const stepLimitsSchema = z
  .object({
    memory: z.union([z.string(), z.number()]).transform((v, ctx) => {
      const bytes = parseMemorySize(v);
      if (bytes === undefined || bytes < MIN_MEMORY_BYTES) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected a size of at least 6m (bytes, or with a unit b, k, m, g, t), got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return bytes;
    }),
    pids: z.number().int().min(1).max(4_194_304),
    cpus: z.number().min(0.01).max(1024),
  })
  .partial()
  .strict()
  .transform((v): StepLimits => ({ memoryBytes: v.memory, pids: v.pids, cpus: v.cpus }));

/**
 * The `linux.resources` of one step, or undefined when nothing is limited. Memory gets a swap
 * limit equal to it (memory+swap in OCI terms: no swap on top) where the cgroup can take one,
 * so a step over its limit is OOM-killed rather than swapped out. Pure.
 */
export function linuxResources(limits: StepLimits, host: CgroupHost): OciResources | undefined {
  const res: OciResources = {};
  if (limits.memoryBytes !== undefined) {
    res.memory = { limit: limits.memoryBytes };
    if (host.swapAccounting) res.memory.swap = limits.memoryBytes;
  }
  if (limits.pids !== undefined) res.pids = { limit: limits.pids };
  if (limits.cpus !== undefined) res.cpu = { quota: Math.round(limits.cpus * CPU_PERIOD_US), period: CPU_PERIOD_US };
  return Object.keys(res).length > 0 ? res : undefined;
}

/**
 * Which cgroup version runc will use here, as runc decides: v2 when /sys/fs/cgroup is the
 * unified hierarchy (it has cgroup.controllers), else v1 (a hybrid host's /sys/fs/cgroup/unified
 * does not count).
 */
export async function detectCgroupHost(mountpoint = '/sys/fs/cgroup'): Promise<CgroupHost> {
  const exists = (p: string): Promise<boolean> => fsp.access(p).then(() => true, () => false);
  // v2: runc leaves out a swap.max of 0 where swap is not accounted, so the limit is always safe
  if (await exists(`${mountpoint}/cgroup.controllers`)) return { version: 2, swapAccounting: true };
  return { version: 1, swapAccounting: await exists(`${mountpoint}/memory/memory.memsw.limit_in_bytes`) };
}
