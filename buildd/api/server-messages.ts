import { z } from 'zod';

/**
 * What the daemon sends on Control.Build and Info, as TypeScript types (for the daemon, which
 * builds them) and zod schemas (for the client, which must not trust a daemon's bytes either).
 */

const optionalRange = z
  .object({ file: z.string(), start_line: z.number().int(), end_line: z.number().int(), column: z.number().int() })
  .nullable()
  .optional();

/** Most paths one FileRequest names: a batch stays below the 4 MiB message limit. */
export const MAX_REQUEST_PATHS = 512;

export const serverMessageSchema = z.discriminatedUnion('msg', [
  z.object({
    msg: z.literal('vertex'),
    vertex: z.object({
      digest: z.string(),
      name: z.string(),
      started_ms: z.number(),
      completed_ms: z.number(),
      cached: z.boolean(),
      error: z.string(),
      /** absent from an older daemon */
      cache_miss: z.string().optional(),
    }),
  }),
  z.object({
    msg: z.literal('log'),
    log: z.object({ vertex: z.string(), stream: z.number().int(), data: z.instanceof(Buffer), /** absent from an older daemon */ timestamp_ms: z.number().optional() }),
  }),
  z.object({ msg: z.literal('warning'), warning: z.object({ message: z.string(), range: optionalRange }) }),
  z.object({ msg: z.literal('export'), export: z.object({ data: z.instanceof(Buffer), eof: z.boolean() }) }),
  z.object({ msg: z.literal('result'), result: z.object({ exporter_response: z.record(z.string()) }) }),
  z.object({ msg: z.literal('secret_request'), secret_request: z.object({ id: z.string().min(1).max(256) }) }),
  z.object({ msg: z.literal('credentials_request'), credentials_request: z.object({ id: z.string().min(1).max(64), host: z.string().min(1).max(255) }) }),
  z.object({ msg: z.literal('cache_blob_request'), cache_blob_request: z.object({ id: z.number().int().min(0).max(0xffffffff), import: z.number().int().min(0).max(63), digest: z.string().max(71) }) }),
  z.object({
    msg: z.literal('cache_export'),
    cache_export: z.object({
      export: z.number().int().min(0).max(63),
      digest: z.string().max(71),
      data: z.instanceof(Buffer).refine((b) => b.length <= 1024 * 1024),
      eof: z.boolean(),
      index: z.boolean(),
      size: z.number().int().nonnegative(),
      tag: z.string().max(128),
    }),
  }),
  z.object({ msg: z.literal('ssh_open'), ssh_open: z.object({ channel: z.number().int().min(0).max(0xffffffff), id: z.string().min(1).max(256) }) }),
  z.object({
    msg: z.literal('ssh_data'),
    ssh_data: z.object({ channel: z.number().int().min(0).max(0xffffffff), data: z.instanceof(Buffer).refine((b) => b.length > 0 && b.length <= 64 * 1024) }),
  }),
  z.object({ msg: z.literal('ssh_close'), ssh_close: z.object({ channel: z.number().int().min(0).max(0xffffffff), error: z.string() }) }),
  z.object({
    msg: z.literal('file_request'),
    file_request: z.object({ local: z.string().min(1).max(128), paths: z.array(z.string().min(1).max(4096)).max(MAX_REQUEST_PATHS), done: z.boolean() }),
  }),
]);

export type ServerMessage = z.infer<typeof serverMessageSchema>;

export const infoResponseSchema = z.object({ version: z.string(), api: z.string() });
export type InfoResponse = z.infer<typeof infoResponseSchema>;

/** Trailing metadata keys of a failed build (see buildd.proto). */
export const ERROR_METADATA = {
  code: 'buildd-error-code',
  vertex: 'buildd-vertex',
  exitCode: 'buildd-exit-code',
  range: 'buildd-range',
} as const;
