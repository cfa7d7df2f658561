import { z } from 'zod';

/**
 * zod schemas of Control.DiskUsage and Control.Prune, both ways: the requests the daemon
 * receives and the records the client receives (neither trusts the other's bytes). Shapes as
 * load-proto.ts produces them (snake_case, int64 as number).
 */

const filters = z.array(z.string().max(1024)).max(64);

export const diskUsageRequestSchema = z.object({ filter: filters }).strip();
export type DiskUsageRequest = z.infer<typeof diskUsageRequestSchema>;

export const pruneRequestSchema = z
  .object({
    filter: filters,
    all: z.boolean(),
    keep_duration_ms: z.number().int().nonnegative(),
    keep_bytes: z.number().int().nonnegative(),
  })
  .strip();
export type PruneRequest = z.infer<typeof pruneRequestSchema>;

export const usageRecordSchema = z
  .object({
    id: z.string(),
    record_type: z.string(),
    parent: z.string(),
    size: z.number(),
    created_at: z.number(),
    last_used_at: z.number(),
    usage_count: z.number(),
    description: z.string(),
    in_use: z.boolean(),
    shared: z.boolean(),
    mutable: z.boolean(),
  })
  .strip();
export type UsageRecordMessage = z.infer<typeof usageRecordSchema>;

export const diskUsageResponseSchema = z.object({ record: z.array(usageRecordSchema) }).strip();
