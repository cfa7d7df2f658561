import { z } from 'zod';

/** ListHistory's reply as the client checks it (proto3 defaults filled in by the loader). */
export const historyRecordSchema = z.object({
  ref: z.string(),
  status: z.string(),
  started_ms: z.number(),
  completed_ms: z.number(),
  frontend: z.string(),
  frontend_attrs: z.record(z.string()),
  outputs: z.array(z.object({ type: z.string(), attrs: z.record(z.string()) })),
  error: z.string(),
  steps: z.number(),
  cached_steps: z.number(),
  exporter_response: z.record(z.string()),
  logs_truncated: z.boolean(),
});
export type HistoryRecordMessage = z.infer<typeof historyRecordSchema>;
export const listHistoryResponseSchema = z.object({ records: z.array(historyRecordSchema) });

/** ListWorkers' reply as the client checks it. */
export const workerRecordSchema = z.object({
  id: z.string(),
  platforms: z.array(z.object({ os: z.string(), architecture: z.string(), variant: z.string() })),
  labels: z.record(z.string()),
  gc_policy: z.array(z.object({ all: z.boolean(), filters: z.array(z.string()), keep_duration_ms: z.number(), keep_bytes: z.number() })),
  executor: z.string(),
  snapshotter: z.string(),
  max_parallelism: z.number(),
});
export type WorkerRecordMessage = z.infer<typeof workerRecordSchema>;
export const listWorkersResponseSchema = z.object({ workers: z.array(workerRecordSchema) });
