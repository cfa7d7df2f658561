import { gcConfigSchema, type GcConfig } from './gc/gc-policy';
import { parseDuration } from './gc/units';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { ENTITLEMENTS, type Entitlement } from '../solver/entitlements';
import type { RegistryHostConfig } from '../store/registry-hosts';
import { DEFAULT_ADDR } from './api/address';
import { stepLimitsSchema, type StepLimits } from './worker/step-limits';
import { SNAPSHOTTER_CHOICES, type SnapshotterChoice } from './worker/snapshotter-choice';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Daemon configuration: the JSON of `--config FILE`, with command-line flags laid over it.
 * Keys mirror the flags. Made once at start and read-only afterwards. buildd.toml is read into
 * this shape too (see config-file/toml-keys.ts for where each key is in TOML).
 */
export const daemonConfigFileSchema = z
  .object({
    addr: z.array(z.string().min(1)).min(1),
    root: z.string().min(1),
    tls: z
      .object({ ca: z.string().min(1), cert: z.string().min(1), key: z.string().min(1) })
      .partial()
      .strict(),
    insecureTcp: z.boolean(),
    registry: z.record(
      z.string().min(1),
      z.object({ http: z.boolean(), insecure: z.boolean(), ca: z.array(z.string().min(1)).max(64), mirrors: z.array(z.string().min(1).max(255)).max(16), keypair: z.array(z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict()).max(4) }).partial().strict(),
    ),
    maxParallelism: z.number().int().min(1).max(1024),
    debug: z.boolean(),
    /** a CNI network configuration (.conflist or .conf) instead of buildd's own bridge */
    cniConfigPath: z.string().min(1),
    /** where the CNI plugin binaries are */
    cniBinaryDir: z.string().min(1),
    /** network sandboxes kept ready for RUN steps */
    cniPoolSize: z.number().int().min(0).max(128),
    /** BuildKit's `insecure-entitlements`: what clients may grant with buildctl build --allow */
    insecureEntitlements: z.array(z.enum(ENTITLEMENTS)).max(16),
    /** cgroup limits of every RUN step: `{ "memory": "2g", "pids": 4096, "cpus": 1.5 }` */
    stepLimits: stepLimitsSchema,
    /** BuildKit's `cgroup-parent` of the OCI worker: the cgroup (cgroupfs path) the steps' cgroups go under */
    cgroupParent: z
      .string()
      .max(4096)
      .regex(/^\/[^\0]*$/, 'expected an absolute cgroup path such as /buildd')
      .refine((p) => !p.split('/').includes('..'), 'expected a path without ".." segments'),
    /** run in the starting user's namespaces (see buildd/rootless/) */
    rootless: z.boolean(),
    /** BuildKit's `noProcessSandbox`: steps share the daemon's PID namespace and /proc (rootless only) */
    noProcessSandbox: z.boolean(),
    /** BuildKit's `oci-worker-snapshotter`: auto (overlayfs where it mounts, else native), overlayfs, native */
    snapshotter: z.enum(SNAPSHOTTER_CHOICES),
    /** `HOST:PORT` of the embedded OCI registry; absent: not served */
    registryAddr: z.string().min(1),
    /** the registry serves HTTPS with the daemon's own certificate (tls.cert, tls.key) */
    registryTls: z.boolean(),
    /** the registry serves HTTPS with a certificate of its own (PEM files) */
    registryTlsCert: z.string().min(1),
    registryTlsKey: z.string().min(1),
    /** htpasswd file (bcrypt entries) for Basic authentication to the registry */
    registryHtpasswd: z.string().min(1),
    /** with registryHtpasswd: pulls need no credentials, pushes do */
    registryAnonymousPull: z.boolean(),
    /** kept copies of incrementally sent locals (<root>/locals): most keys and bytes, LRU unused ones go first */
    keptLocals: z.object({ maxKeys: z.number().int().min(1).max(4096), maxBytes: z.number().int().min(0) }).partial().strict(),
    /** the most bytes a pulled layer may decompress to (default 64 GiB): a decompression bomb fails the pull */
    maxLayerBytes: z.number().int().min(1),
    /** automatic GC of the build cache (see buildd/gc/gc-policy.ts) */
    gc: gcConfigSchema,
    /** `tcp://host:port` or `unix:///path` of a plain gRPC server with only grpc.health.v1 (probes) */
    healthAddr: z.string().min(1),
    /** `host:port` of the HTTP debug server: Prometheus /metrics and /debug/pprof profiles */
    debugAddr: z.string().min(1),
    /** after SIGTERM, how long running builds may go on (seconds, or a Go duration such as "5m") */
    shutdownGrace: z.union([z.number().min(0).max(86_400), z.string().min(1).max(32)]),
    /** log level: trace, debug, info, warn, error, fatal (`debug: true` means debug) */
    logLevel: z.enum(LOG_LEVELS),
    /** build history kept for `buildctl debug histories` (BuildKit's [history]): most entries, oldest age in seconds, most bytes of progress logs (ours) */
    history: z.object({ maxEntries: z.number().int().min(0).max(100_000), maxAge: z.number().int().min(0), maxBytes: z.number().int().min(0) }).partial().strict(),
    /** OpenTelemetry traces over OTLP/HTTP; OTEL_EXPORTER_OTLP_ENDPOINT sets the endpoint too */
    otel: z.object({ endpoint: z.string().url(), serviceName: z.string().min(1).max(255) }).partial().strict(),
  })
  .partial()
  .strict();

export type DaemonConfigFile = z.infer<typeof daemonConfigFileSchema>;

/** The resolved configuration the daemon and `createBuilder` run with. */
export interface DaemonConfig {
  /** listen addresses: `tcp://host:port`, `unix:///path` */
  addr: string[];
  /** state directory: content store, snapshots, sessions */
  root: string;
  /** paths of PEM files; all three set means mutual TLS on tcp listeners */
  tls: { ca?: string; cert?: string; key?: string };
  /** allow tcp listeners without TLS */
  insecureTcp: boolean;
  /**
   * per registry host (`host[:port]`), as BuildKit's `[registry."host"]`: `http` plain HTTP,
   * `insecure` unverified TLS and plain HTTP where TLS is not spoken, `ca` PEM files of CAs to
   * trust (see RegistryHostConfig)
   */
  registry: Record<string, RegistryHostConfig>;
  /** most steps run at once; undefined lets the builder choose */
  maxParallelism?: number;
  debug: boolean;
  /** CNI config file of the RUN network; undefined: buildd's own bridge (buildd0, 10.10.0.0/16) */
  cniConfigPath?: string;
  /** CNI plugin binaries; undefined: /usr/lib/cni */
  cniBinaryDir?: string;
  /** network sandboxes made ahead for RUN steps; undefined or 0: each made when its step starts */
  cniPoolSize?: number;
  /**
   * entitlements clients may grant their builds (`--allow-insecure-entitlement`, BuildKit's
   * `insecure-entitlements`); empty: none, a build asking for one fails
   */
  insecureEntitlements: Entitlement[];
  /** cgroup limits of every RUN step (memory, pids, CPU); undefined: none */
  stepLimits?: StepLimits;
  /** bounds of the kept locals; undefined: 32 keys, 10 GiB */
  keptLocals?: { maxKeys?: number; maxBytes?: number };
  /** the most bytes a pulled layer may decompress to; DEFAULT_MAX_LAYER_BYTES when absent */
  maxLayerBytes?: number;
  /** automatic GC; undefined: on, with BuildKit's default policy */
  gc?: GcConfig;
  /**
   * cgroup under which each step gets its own (BuildKit's `cgroup-parent`); undefined: /buildd
   * for a root daemon; for a rootless one, a cgroup the user owns (see
   * worker/cgroups/rootless-cgroup-parent.ts), needed on cgroup v1 for stepLimits
   */
  cgroupParent?: string;
  /**
   * `--rootless`: started by an unprivileged user, buildd re-executes itself under rootlesskit
   * and runs as root of that user's namespaces (subuid/subgid maps); default root
   * `$XDG_DATA_HOME/buildd` (~/.local/share/buildd)
   */
  rootless: boolean;
  /**
   * `--oci-worker-no-process-sandbox` (BuildKit's): RUN steps get no PID namespace of their own
   * and see the daemon's /proc (a bind mount) instead of a fresh procfs, for a container whose
   * /proc is masked (Kubernetes), where the kernel refuses a new procfs in a user namespace.
   * Steps can then see and signal the daemon's processes; rootless only, as in BuildKit.
   */
  noProcessSandbox: boolean;
  /** `--oci-worker-snapshotter`: how snapshots are layered (see openSnapshotter); default auto */
  snapshotter: SnapshotterChoice;
  /** `--registry-addr`: where the embedded OCI registry listens (see buildd/registry); undefined: not served */
  registryAddr?: string;
  /** the registry's HTTPS certificate and key (its own, or the daemon's with --registry-tls); undefined: plain HTTP */
  registryTls?: { cert: string; key: string };
  /** `--registry-htpasswd`: Basic authentication to the registry; undefined: none */
  registryHtpasswd?: string;
  /** `--registry-anonymous-pull`: with an htpasswd file, pulls need no credentials */
  registryAnonymousPull: boolean;
  /** `--health-addr`: a plain gRPC server with only the health service (for probes); undefined: none */
  healthAddr?: string;
  /** `--debugaddr`: the HTTP server of /metrics and /debug/pprof; undefined: none */
  debugAddr?: string;
  /** `--shutdown-grace`: after SIGTERM, how long running builds may finish before they are cancelled */
  shutdownGraceMs: number;
  /** `--log-level` (or `--debug`: debug); default info */
  logLevel: LogLevel;
  /** history limits; undefined: BuildKit's defaults (see buildd/history) */
  history?: { maxEntries?: number; maxAge?: number; maxBytes?: number };
  /** OTLP/HTTP trace export; undefined: none unless OTEL_EXPORTER_OTLP_ENDPOINT is set */
  otel?: { endpoint?: string; serviceName?: string };
}

/** How long running builds may finish after SIGTERM unless configured: below Kubernetes' default 30 s, so cleanup still fits. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 20_000;

export const DEFAULT_ROOT = '/var/lib/buildd';

/** As BuildKit's rootless default ($XDG_DATA_HOME/buildkit): a dir the user owns. */
function rootlessDefaultRoot(): string {
  const data = process.env['XDG_DATA_HOME'] ?? path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'buildd');
}

/** Flags as commander parsed them; undefined = not given. */
export interface DaemonFlags {
  addr?: string[];
  root?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  insecureTcp?: boolean;
  debug?: boolean;
  cniConfigPath?: string;
  cniBinaryDir?: string;
  cniPoolSize?: number;
  allowInsecureEntitlement?: Entitlement[];
  rootless?: boolean;
  ociWorkerNoProcessSandbox?: boolean;
  ociWorkerSnapshotter?: SnapshotterChoice;
  registryAddr?: string;
  registryTls?: boolean;
  registryTlscert?: string;
  registryTlskey?: string;
  registryHtpasswd?: string;
  registryAnonymousPull?: boolean;
  healthAddr?: string;
  debugaddr?: string;
  shutdownGrace?: string;
  logLevel?: LogLevel;
}

/** The registry's key pair: its own (both files), or the daemon's with --registry-tls. */
function registryTls(flags: DaemonFlags, file: DaemonConfigFile, daemon: { cert?: string; key?: string }): { cert: string; key: string } | undefined {
  const cert = flags.registryTlscert ?? file.registryTlsCert;
  const key = flags.registryTlskey ?? file.registryTlsKey;
  if ((cert === undefined) !== (key === undefined)) {
    throw new BuildError('invalid-argument', 'Cannot configure the registry: --registry-tlscert and --registry-tlskey must be given together');
  }
  if (cert !== undefined && key !== undefined) return { cert, key };
  if (!(flags.registryTls ?? file.registryTls ?? false)) return undefined;
  if (daemon.cert === undefined || daemon.key === undefined) {
    throw new BuildError('invalid-argument', "Cannot configure the registry: --registry-tls serves the daemon's certificate, and the daemon has none (--tlscert, --tlskey)");
  }
  return { cert: daemon.cert, key: daemon.key };
}

function shutdownGraceMs(value: string | number | undefined): number {
  if (value === undefined) return DEFAULT_SHUTDOWN_GRACE_MS;
  try {
    const ms = typeof value === 'number' ? value * 1000 : parseDuration(value);
    if (ms > 86_400_000) throw new Error('more than 24h');
    return ms;
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot configure the shutdown grace period: ${(err as Error).message}`);
  }
}

/** Flags override the file; the file overrides the defaults. */
export function mergeConfig(file: DaemonConfigFile, flags: DaemonFlags): DaemonConfig {
  const tls = {
    ca: flags.tlscacert ?? file.tls?.ca,
    cert: flags.tlscert ?? file.tls?.cert,
    key: flags.tlskey ?? file.tls?.key,
  };
  const rootless = flags.rootless ?? file.rootless ?? false;
  const config: DaemonConfig = {
    addr: flags.addr && flags.addr.length > 0 ? flags.addr : file.addr ?? [DEFAULT_ADDR],
    root: flags.root ?? file.root ?? (rootless ? rootlessDefaultRoot() : DEFAULT_ROOT),
    tls,
    insecureTcp: flags.insecureTcp ?? file.insecureTcp ?? false,
    registry: file.registry ?? {},
    maxParallelism: file.maxParallelism,
    debug: flags.debug ?? file.debug ?? false,
    cniConfigPath: flags.cniConfigPath ?? file.cniConfigPath,
    cniBinaryDir: flags.cniBinaryDir ?? file.cniBinaryDir,
    cniPoolSize: flags.cniPoolSize ?? file.cniPoolSize,
    // as buildkitd: the flags replace the file's list, duplicates are harmless
    insecureEntitlements: [...new Set(flags.allowInsecureEntitlement && flags.allowInsecureEntitlement.length > 0 ? flags.allowInsecureEntitlement : file.insecureEntitlements ?? [])],
    stepLimits: file.stepLimits,
    cgroupParent: file.cgroupParent,
    keptLocals: file.keptLocals,
    maxLayerBytes: file.maxLayerBytes,
    gc: file.gc,
    rootless,
    noProcessSandbox: flags.ociWorkerNoProcessSandbox ?? file.noProcessSandbox ?? false,
    snapshotter: flags.ociWorkerSnapshotter ?? file.snapshotter ?? 'auto',
    registryAddr: flags.registryAddr ?? file.registryAddr,
    registryTls: registryTls(flags, file, tls),
    registryHtpasswd: flags.registryHtpasswd ?? file.registryHtpasswd,
    registryAnonymousPull: flags.registryAnonymousPull ?? file.registryAnonymousPull ?? false,
    healthAddr: flags.healthAddr ?? file.healthAddr,
    debugAddr: flags.debugaddr ?? file.debugAddr,
    shutdownGraceMs: shutdownGraceMs(flags.shutdownGrace ?? file.shutdownGrace),
    logLevel: flags.logLevel ?? file.logLevel ?? ((flags.debug ?? file.debug ?? false) ? 'debug' : 'info'),
    history: file.history,
    otel: file.otel,
  };
  if (config.registryAddr === undefined && (config.registryTls !== undefined || config.registryHtpasswd !== undefined || config.registryAnonymousPull)) {
    throw new BuildError('invalid-argument', 'Cannot configure the registry: its TLS and authentication settings need --registry-addr');
  }
  if (config.registryAnonymousPull && config.registryHtpasswd === undefined) {
    throw new BuildError('invalid-argument', 'Cannot configure the registry: --registry-anonymous-pull needs --registry-htpasswd (without it every pull is anonymous already)');
  }
  if (config.noProcessSandbox && !config.rootless) {
    // as buildkitd: a root daemon's steps would hold root's capabilities in the host's PID
    // namespace, and only a user namespace needs it (a root daemon may mount procfs under masks)
    throw new BuildError('invalid-argument', 'Cannot configure the worker: --oci-worker-no-process-sandbox needs --rootless (a root daemon can mount /proc for its steps even where /proc is masked)');
  }
  const given = [tls.ca, tls.cert, tls.key].filter((v) => v !== undefined).length;
  if (given !== 0 && given !== 3) {
    throw new BuildError('invalid-argument', 'Cannot configure TLS: --tlscacert, --tlscert and --tlskey must be given together');
  }
  return config;
}
