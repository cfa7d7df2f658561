import type { WorkerPlatforms } from './worker/worker-platforms';
import type { CacheStorage } from './gc/cache-manager';
import type { EmbeddedRegistry } from './registry/embedded-registry';
import type { Readable, Writable } from 'node:stream';
import type { SourceRange } from '../solver/build-error';
import type { Entitlement } from '../solver/entitlements';
import type { SessionAttachables } from '../solver/worker';

/**
 * The seam between the daemon's API layer (gRPC, TLS, sessions) and the build machinery
 * (frontend, solver, worker, store). The API layer receives a request and the client's local
 * directories, then calls `Builder.build` once per build; everything after that belongs to
 * the builder.
 */

/** One `--output` of buildctl: `type=image,name=...,push=true`, `type=oci,dest=...`, `type=docker,dest=...`. */
export interface ExportSpec {
  type: 'image' | 'oci' | 'docker' | 'tar' | 'local';
  /** every key=value of the --output flag but `type` (and `dest`, which the client keeps) */
  attrs: Record<string, string>;
}

export interface BuildRequest {
  /** unique id of this build, for logs and progress */
  ref: string;
  /** `dockerfile.v0` */
  frontend: string;
  /** `--opt` pairs: `filename`, `target`, `build-arg:K` ... */
  frontendAttrs: Record<string, string>;
  /** `--local` name → directory on the daemon holding what the client sent (read-only for the builder) */
  locals: Record<string, string>;
  exports: ExportSpec[];
  noCache: boolean;
  /** what the client grants (buildctl build --allow); the builder checks them against the daemon's */
  entitlements: Entitlement[];
  /** --export-cache and --import-cache entries, as the client sent them (checked by the builder) */
  cacheExports?: CacheOptions[];
  cacheImports?: CacheOptions[];
}

/** One --export-cache or --import-cache: `type=registry,ref=R,mode=max`. */
export interface CacheOptions {
  type: string;
  /** every key=value of the flag but `type` */
  attrs: Record<string, string>;
  /** a type=local export: the blobs the client's directory has already (not sent again) */
  present?: string[];
}

/** Progress, as the client renders it. Times are milliseconds since the epoch. */
export type ProgressEvent =
  | { type: 'vertex'; digest: string; name: string; started?: number; completed?: number; cached: boolean; error?: string; cacheMiss?: string }
  /** `at`: when the step wrote it (ms since the epoch), known in a replayed history only */
  | { type: 'log'; vertex: string; stream: 1 | 2; data: Buffer; at?: number }
  | { type: 'warning'; message: string; range?: SourceRange };

/**
 * What one build may use of its client connection. Lives exactly as long as one `build` call.
 */
export interface BuildSession {
  progress(event: ProgressEvent): void;
  /**
   * A stream to the client for an exporter whose destination is on the client (oci/docker
   * tar). Call at most once per build; end it when the tar is complete. Honour its
   * backpressure (write callbacks / 'drain').
   */
  exportStream(): Writable;
  /** aborted when the client goes away or the daemon shuts down */
  signal: AbortSignal;
  /** the client's secrets and ssh agents (buildctl --secret, --ssh), asked for on demand */
  attachables?: SessionAttachables;
  /** the client's cache directories (--export-cache/--import-cache type=local) */
  clientCache?: ClientCacheTransfer;
}

/**
 * What a build reads from and writes to the client's local cache directories, over its
 * session. Lives as long as one build call.
 */
export interface ClientCacheTransfer {
  /** Blob `digest` (index.json when '') of the directory of --import-cache entry `entry`. */
  cacheBlob(entry: number, digest: string): Readable;
  /** One message towards the directory of --export-cache entry `export` (see CacheExportData). */
  sendCacheExport(msg: { export: number; digest: string; data: Buffer; eof: boolean; index: boolean; size: number; tag: string }): Promise<void>;
}

/** Exporter response: `containerimage.digest`, `containerimage.config.digest`, `image.name`. */
export type ExporterResponse = Record<string, string>;

/**
 * Lifecycle: made once by the daemon at start (`createBuilder`), serves any number of
 * concurrent `build` calls, and `close` releases everything it holds (after the daemon has
 * cancelled the running builds and they have settled).
 */
export interface Builder {
  build(req: BuildRequest, session: BuildSession): Promise<ExporterResponse>;
  close(): Promise<void>;
  /** the embedded registry's state when the daemon serves one (config.registryAddr): its server serves it, builds publish into it */
  readonly embeddedRegistry?: EmbeddedRegistry;
  /** the stores du, prune and GC work on (absent in builders without a cache, as tests' fakes) */
  readonly storage?: CacheStorage;
  /** the platforms it builds for (`buildctl debug workers`); absent in tests' fakes */
  readonly platforms?: WorkerPlatforms;
}
