import type { KeyParts } from './key-parts';
import type { Duplex } from 'node:stream';
import type { Vertex } from './definition-graph';

/**
 * What an op produced: a committed snapshot (`id: null` is the empty scratch filesystem),
 * or a client directory received for this build (`local://` sources), which lives only as
 * long as the build.
 */
export type OpResult = { kind: 'snapshot'; id: string | null } | { kind: 'local'; name: string; dir: string };

/** Where a running step reports its output. */
export interface StepLog {
  write(stream: 1 | 2, data: Buffer): void;
}

/**
 * What the client lends a build for RUN mounts, asked for when a step needs it (BuildKit's
 * session attachables). Lives as long as the build's call; after it, every method rejects.
 */
export interface SessionAttachables {
  /** The value of secret `id`, asked of the client now and never cached; undefined when the client has none. */
  secret(id: string, signal: AbortSignal): Promise<Buffer | undefined>;
  /** Whether the client forwards an ssh agent with this id (buildctl --ssh ID). */
  hasSshAgent(id: string): boolean;
  /** A new connection to the client's agent `id`, relayed over the session; end or destroy it to close. */
  connectSshAgent(id: string): Duplex;
  /** Whether the client answers registryCredentials (buildctl does: BuildKit's auth session). */
  readonly forwardsCredentials: boolean;
  /**
   * The client's credentials for registry `host` (host[:port], docker.io for Docker Hub), asked
   * once per build and host; undefined when it has none or forwards none.
   */
  registryCredentials(host: string): Promise<{ username: string; password: string } | undefined>;
}

/** Everything one op needs from its build; valid while that op runs. */
export interface OpContext {
  /** `--local` name → directory of this build */
  locals: Record<string, string>;
  /** secrets and ssh agents of the client; absent when the build has no client session */
  session?: SessionAttachables;
  log: StepLog;
  signal: AbortSignal;
  /** the build the step runs for: step slots go to builds in turn (see Semaphore) */
  group?: object;
  /**
   * Records the step's result (the snapshot the worker commits for it) in the commit's own
   * transaction: the solver's cache record then lands with the snapshot or not at all. A worker
   * passes it to the commit of the snapshot it returns (CommitOptions.within), never to another.
   */
  recordCommit?: (snapshot: string) => void;
}

/** An op's content-based cache key and whether its result may be stored in the cache. */
export interface CacheKey {
  key: string;
  /** false for results that live only as long as one build (local directories) */
  cacheable: boolean;
  /** what the key is made of, for explaining a miss */
  parts?: KeyParts;
}

/**
 * Runs ops on one machine. The solver owns scheduling, deduplication and cache lookups;
 * the worker owns what an op means. Lifecycle: one per daemon, shared by all builds.
 */
export interface Worker {
  /**
   * The cache key of `vertex`, from the op (normalized), its inputs' keys and, for copies from a
   * local source, the checksum of the selected paths. An input's `result` is given where it is
   * known before anything runs (a local source's directory, a cache hit); a key must never need
   * more, so that a step under a hit is neither run nor downloaded.
   */
  cacheKey(vertex: Vertex, inputs: Array<{ key: string; result?: OpResult }>, ctx: OpContext): Promise<CacheKey>;
  run(vertex: Vertex, inputs: OpResult[], ctx: OpContext): Promise<OpResult>;
  /** whether a result recorded in the cache is still usable (its snapshot exists) */
  exists(result: OpResult): Promise<boolean>;
}
