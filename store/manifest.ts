import { z } from 'zod';
import { MediaTypes } from './oci-media-types';

/**
 * Zod schemas for what a registry (or an OCI layout) hands us: descriptors, image manifests
 * (OCI and Docker schema 2) and indexes (OCI index, Docker manifest list). Unknown members pass
 * through so that a manifest read and re-serialized loses nothing.
 */
const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'a digest must be sha256:<64 lowercase hex digits>');

export const platformSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
}).passthrough();
export type Platform = z.infer<typeof platformSchema>;

export const descriptorSchema = z.object({
  mediaType: z.string(),
  digest: digestSchema,
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string()).optional(),
  platform: platformSchema.optional(),
}).passthrough();
/** A pointer to content: what it is, its digest and its size. */
export type Descriptor = z.infer<typeof descriptorSchema>;

export const imageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.enum([MediaTypes.ociManifest, MediaTypes.dockerManifest]).optional(),
  artifactType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema).max(1000),
  subject: descriptorSchema.optional(),
  annotations: z.record(z.string()).optional(),
}).passthrough();
/** An OCI image manifest or a Docker schema 2 manifest. */
export type ImageManifest = z.infer<typeof imageManifestSchema>;

export const imageIndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.enum([MediaTypes.ociIndex, MediaTypes.dockerManifestList]).optional(),
  manifests: z.array(descriptorSchema).max(10000),
  subject: descriptorSchema.optional(),
  annotations: z.record(z.string()).optional(),
}).passthrough();
/** An OCI image index or a Docker manifest list. */
export type ImageIndex = z.infer<typeof imageIndexSchema>;

/** The `index.json` of an OCI image layout: an OCI index. */
export const ociLayoutIndexSchema = imageIndexSchema;
