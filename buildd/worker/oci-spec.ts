import type { ResolvedUser } from '../../store/passwd';
import { DEFAULT_NOFILE, DEFAULT_PATH } from './oci-defaults';
import { securitySections, type SecurityMode } from './oci-security';
import type { SeccompTarget, OciSeccomp } from './seccomp-profile';
import type { OciResources } from './step-limits';
import { type InsecureHost, withInsecureSecurity } from './insecure-spec';
import { withoutProcessSandbox, type ProcessMode } from './process-mode';

/** The part of the OCI runtime spec 1.0 (config.json) that buildd writes. */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    rlimits: { type: string; soft: number; hard: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: 'pid' | 'ipc' | 'uts' | 'mount' | 'network'; path?: string }[];
    cgroupsPath?: string;
    maskedPaths: string[];
    readonlyPaths: string[];
    /** absent in insecure mode */
    seccomp?: OciSeccomp;
    /** the daemon's per-step limits; absent when none are configured */
    resources?: OciResources;
  };
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** Host paths of the files the bundle provides for /etc inside the container. */
export interface EtcFiles {
  hosts: string;
  resolvConf: string;
  hostname: string;
}

/** Everything the spec of one RUN container depends on, already resolved. */
export interface OciSpecInput {
  rootfs: string;
  args: string[];
  env: string[];
  /** absolute path inside the container */
  cwd: string;
  user: ResolvedUser;
  hostname: string;
  /** absent (rootless): runc then tolerates cgroups it may not create */
  cgroupsPath?: string;
  etcFiles: EtcFiles;
  /** the step's RUN mounts (bind, cache, tmpfs), after the default and /etc ones */
  extraMounts?: readonly OciMount[];
  /** a network namespace to join (CNI sandbox); absent means a fresh loopback-only one */
  netnsPath?: string;
  /** RUN --network=host: the daemon's own network namespace (no `network` namespace entry) */
  hostNetwork?: boolean;
  /** RUN --security=insecure: privileged, with what the host lends (see withInsecureSecurity) */
  insecure?: InsecureHost;
  /** 'sandbox' (default): Docker's confinement; 'insecure': see SecurityMode */
  security?: SecurityMode;
  /** the cgroup limits of the step (linuxResources of the daemon's stepLimits) */
  resources?: OciResources;
  /** the architecture and kernel the seccomp filter is made for; the host's by default */
  seccompTarget?: Omit<SeccompTarget, 'capabilities'>;
  /** secret files and ssh agent sockets (bind mounts), after the defaults so none hides them */
  sessionMounts?: OciMount[];
  /** 'sandbox' (default): a PID namespace and procfs of the step's own; see ProcessMode */
  processMode?: ProcessMode;
}

/**
 * Builds the runtime spec of one RUN container, Docker's defaults included. Pure: the caller
 * resolves the user, generates the /etc files and writes the result as `<bundle>/config.json`.
 */
export function buildOciSpec(input: OciSpecInput): OciSpec {
  // RUN --security=insecure: the privileged sections, then what the host lends (devices, sysfs)
  const mode: SecurityMode = input.insecure !== undefined ? 'insecure' : input.security ?? 'sandbox';
  const security = securitySections(mode, input.seccompTarget);
  const caps = security.capabilities;
  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      // no terminal: stdout and stderr must stay two streams, as BuildKit reports them
      terminal: false,
      user: { uid: input.user.uid, gid: input.user.gid, additionalGids: [...input.user.additionalGids] },
      args: [...input.args],
      env: withDefaultPath(input.env),
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps], inheritable: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: DEFAULT_NOFILE.soft, hard: DEFAULT_NOFILE.hard }],
      noNewPrivileges: security.noNewPrivileges,
    },
    // the step's changes are the layer, so the root is writable
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    mounts: [...defaultMounts(), ...etcMounts(input.etcFiles), ...(input.extraMounts ?? []).map((m) => ({ ...m, options: [...m.options] })), ...(input.sessionMounts ?? [])],
    linux: {
      // without a path, runc makes a new network namespace and brings up its loopback, nothing
      // else; with one, runc joins it as it is (CNI already set up loopback and eth0)
      namespaces: [
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        // host network: no entry at all, so the step stays in the daemon's namespace
        ...(input.hostNetwork ? [] : [input.netnsPath === undefined ? { type: 'network' as const } : { type: 'network' as const, path: input.netnsPath }]),
      ],
      ...(input.cgroupsPath === undefined ? {} : { cgroupsPath: input.cgroupsPath }),
      maskedPaths: security.maskedPaths,
      readonlyPaths: security.readonlyPaths,
    },
  };
  if (security.seccomp) spec.linux.seccomp = security.seccomp;
  if (input.resources) spec.linux.resources = structuredClone(input.resources);
  const secured = input.insecure === undefined ? spec : withInsecureSecurity(spec, input.insecure);
  return input.processMode === 'no-sandbox' ? withoutProcessSandbox(secured) : secured;
}

/** Adds BuildKit's default PATH when `env` has none; an explicit PATH (even empty) is kept. */
export function withDefaultPath(env: readonly string[]): string[] {
  const hasPath = env.some((e) => e.startsWith('PATH='));
  return hasPath ? [...env] : [...env, DEFAULT_PATH];
}

/** The mount destinations of every RUN container, for the stub cleaner. */
export function mountDestinations(spec: OciSpec): string[] {
  return spec.mounts.map((m) => m.destination);
}

function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev'] },
  ];
}

function etcMounts(files: EtcFiles): OciMount[] {
  // read-only: a RUN step must not edit the daemon's generated files (its edits would vanish
  // from the layer anyway, since the mount hides the rootfs file)
  const bind = (destination: string, source: string): OciMount => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'ro'],
  });
  return [bind('/etc/hosts', files.hosts), bind('/etc/resolv.conf', files.resolvConf), bind('/etc/hostname', files.hostname)];
}
