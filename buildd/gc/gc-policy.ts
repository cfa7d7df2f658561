import { statfs } from 'node:fs/promises';
import { z } from 'zod';
import { parseRecordFilters } from './record-filter';
import type { PruneOptions } from './prune-plan';
import { parseDuration, parseSize } from './units';

const size = z.union([z.number().int().nonnegative(), z.string().min(1)]);
const duration = z.union([z.number().nonnegative(), z.string().min(1)]);

/** One rule of the config's `gc.policy`, as BuildKit's `[[worker.oci.gcpolicy]]`. */
const ruleSchema = z
  .object({
    all: z.boolean(),
    /** keep what was used within this long: a Go duration ("48h") or seconds */
    keepDuration: duration,
    /** stop once what is left takes at most this: bytes, or a size with a unit ("512MB") */
    keepBytes: size,
    filters: z.array(z.string().max(1024)).max(64),
  })
  .partial()
  .strict();

/** The config's `gc` key (BuildKit's `gc`, `gckeepstorage`, `gcpolicy`). */
export const gcConfigSchema = z
  .object({
    /** default true, as BuildKit's OCI worker */
    enabled: z.boolean(),
    /** the default rules' bound: bytes or a size with a unit; default 10% of the root's file system */
    keepStorage: size,
    policy: z.array(ruleSchema).max(32),
    /** how long after a build (or the start) a run begins at the earliest: a Go duration or seconds; default 1m */
    interval: duration,
  })
  .partial()
  .strict();

export type GcConfig = z.infer<typeof gcConfigSchema>;

/**
 * The rules the daemon's GC applies, in order, after each build and at start: the config's
 * `policy` when given, else BuildKit's default policy with `keepStorage` as its bound (kept
 * contexts, then cache mounts, unused for 48 h beyond 512 MB first, then anything unused for
 * 60 days, then anything beyond the bound). Empty when GC is off. Values are checked here: a bad filter,
 * size or duration stops the daemon's start with the key's name.
 */
export async function gcRules(config: GcConfig | undefined, root: string): Promise<PruneOptions[]> {
  if (config?.enabled === false) return [];
  const keepStorage = config?.keepStorage === undefined ? await tenthOfDisk(root) : toBytes(config.keepStorage);
  if (config?.policy !== undefined) {
    return config.policy.map((r) => ({
      ...(r.all === undefined ? {} : { all: r.all }),
      ...(r.keepDuration === undefined ? {} : { keepDurationMs: typeof r.keepDuration === 'number' ? r.keepDuration * 1000 : parseDuration(r.keepDuration) }),
      ...(r.keepBytes === undefined ? {} : { keepBytes: toBytes(r.keepBytes) }),
      filters: parseRecordFilters(r.filters ?? []),
    }));
  }
  return [
    { filters: parseRecordFilters(['type==source.local']), keepDurationMs: 48 * 3_600_000, keepBytes: 512e6 },
    { filters: parseRecordFilters(['type==exec.cachemount']), keepDurationMs: 48 * 3_600_000, keepBytes: 512e6 },
    { filters: [], keepDurationMs: 60 * 24 * 3_600_000, keepBytes: keepStorage },
    { filters: [], keepBytes: keepStorage },
  ];
}

function toBytes(v: number | string): number {
  return typeof v === 'number' ? v : parseSize(v);
}

async function tenthOfDisk(root: string): Promise<number> {
  const st = await statfs(root);
  return Math.floor((st.blocks * st.bsize) / 10);
}

/** gc.interval in milliseconds (default one minute, BuildKit's throttle). */
export function gcDelayMs(config: GcConfig | undefined): number {
  const v = config?.interval;
  if (v === undefined) return 60_000;
  return typeof v === 'number' ? v * 1000 : parseDuration(v);
}
