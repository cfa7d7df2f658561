import { z } from 'zod';

/**
 * The OCI image configuration (application/vnd.oci.image.config.v1+json), which Docker's
 * image config also satisfies. Field names are the spec's, capitalized as it writes them.
 * Unknown members are kept (passthrough): a config read from a registry is written back
 * as it was, plus our changes.
 */
export const healthcheckSchema = z.object({
  Test: z.array(z.string()).optional(),
  Interval: z.number().optional(),
  Timeout: z.number().optional(),
  StartPeriod: z.number().optional(),
  StartInterval: z.number().optional(),
  Retries: z.number().optional(),
}).passthrough();

export const containerConfigSchema = z.object({
  User: z.string().optional(),
  ExposedPorts: z.record(z.object({}).passthrough()).optional().nullable(),
  Env: z.array(z.string()).optional().nullable(),
  Entrypoint: z.array(z.string()).optional().nullable(),
  Cmd: z.array(z.string()).optional().nullable(),
  Volumes: z.record(z.object({}).passthrough()).optional().nullable(),
  WorkingDir: z.string().optional(),
  Labels: z.record(z.string()).optional().nullable(),
  StopSignal: z.string().optional(),
  Shell: z.array(z.string()).optional().nullable(),
  Healthcheck: healthcheckSchema.optional().nullable(),
  OnBuild: z.array(z.string()).optional().nullable(),
  ArgsEscaped: z.boolean().optional(),
}).passthrough();
export type ContainerConfig = z.infer<typeof containerConfigSchema>;

export const historySchema = z.object({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
}).passthrough();
export type History = z.infer<typeof historySchema>;

export const imageConfigSchema = z.object({
  created: z.string().optional(),
  author: z.string().optional(),
  architecture: z.string(),
  os: z.string(),
  variant: z.string().optional(),
  config: containerConfigSchema.optional(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(z.string()) }).passthrough(),
  history: z.array(historySchema).optional(),
}).passthrough();
export type ImageConfig = z.infer<typeof imageConfigSchema>;
