import type { Writable } from 'node:stream';
import type { OciMount } from './oci-spec';

/**
 * One RUN step to execute: a process in a fresh container on an already mounted rootfs.
 * The request is read once by `Executor.run`; the caller keeps ownership of `rootfs`, `stdout`
 * and `stderr` (the executor never unmounts the rootfs nor ends the streams).
 */
export interface ExecRequest {
  /** container id hint; a unique id is generated when absent */
  id?: string;
  /** an already mounted writable rootfs directory (overlay merged dir); never unmounted here */
  rootfs: string;
  args: string[];
  /** `KEY=value` pairs; PATH gets BuildKit's default when missing */
  env: string[];
  /** absolute path inside the rootfs; created (0755, owned by the user) when missing */
  cwd: string;
  /** as in USER: 'name', 'uid', 'name:group', 'uid:gid'; '' is root */
  user: string;
  /**
   * 'none': a fresh namespace with loopback only. 'sandbox': the daemon's network (CNI); an
   * executor without networking treats it as 'none'. 'host': the daemon's own network
   * namespace (the caller has checked the network.host entitlement).
   */
  network: 'none' | 'sandbox' | 'host';
  /**
   * 'insecure': privileged (all the daemon's capabilities, no masked paths, no seccomp, the
   * host's devices; the caller has checked the security.insecure entitlement); default 'sandbox'
   */
  security?: 'sandbox' | 'insecure';
  /**
   * join this existing network namespace (a file, e.g. a CNI sandbox's) instead of a fresh
   * loopback-only one; set by NetworkedExecutor for 'sandbox' steps, owned by whoever set it
   */
  netnsPath?: string;
  /**
   * the step's RUN mounts besides the root (bind, cache, tmpfs), mounted after the defaults in
   * this order; their sources are prepared, and released after run() settles, by the caller
   */
  mounts?: OciMount[];
  /** defaults to 'buildd' */
  hostname?: string;
  /**
   * What the client lends the step (secret files, ssh agent sockets): bind mounts added after
   * the defaults; their sources belong to the caller and outlive run()
   */
  sessionMounts?: OciMount[];
  /**
   * `NAME=value` secrets for the process environment (replacing same-named entries of `env`).
   * They must not reach a disk: when set, config.json is written to `privateDir` (a tmpfs
   * directory the caller owns) and the bundle only links to it.
   */
  secretEnv?: string[];
  privateDir?: string;
  /** the process output is streamed here as it comes, honouring backpressure */
  stdout: Writable;
  stderr: Writable;
  /** abort: the container is killed (SIGKILL) and deleted, run() rejects with BuildError('cancelled') */
  signal?: AbortSignal;
}

/** How a RUN step ended when its process ran. */
export interface ExecResult {
  /** the process exit code, also non-zero; 128+n when killed by signal n */
  exitCode: number;
}

/**
 * Runs RUN steps in containers.
 *
 * Lifecycle: one Executor per daemon; `run()` once per RUN step, concurrently if need be; every
 * container it starts is deleted (with its bundle) before `run()` settles, whatever the outcome.
 * `close()` at daemon shutdown kills and deletes every container still running; after it,
 * `run()` rejects.
 */
export interface Executor {
  /** Resolves with the exit code (also non-zero); rejects only when the process could not run or was cancelled. */
  run(req: ExecRequest): Promise<ExecResult>;
  /** Kills and deletes every container still running, and waits for their run() to settle. */
  close(): Promise<void>;
}
