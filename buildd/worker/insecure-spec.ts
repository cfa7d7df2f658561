import type { OciMount, OciSpec } from './oci-spec';

/** A device node runc creates in the container (OCI `linux.devices`). */
export interface OciDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** What the host lends an insecure step; see readHostPrivileges. */
export interface InsecureHost {
  /** capability names, e.g. CAP_SYS_ADMIN: the daemon's own effective set */
  capabilities: readonly string[];
  devices: readonly OciDevice[];
}

/** An OCI spec with the fields only insecure mode writes. */
export type InsecureOciSpec = OciSpec & {
  linux: OciSpec['linux'] & {
    devices: OciDevice[];
    resources: { devices: { allow: boolean; type: 'c' | 'b'; access: string }[] };
  };
};

/**
 * `RUN --security=insecure`, as BuildKit's security.WithInsecureSpec with writable sysfs and
 * cgroupfs: every capability the daemon holds (also ambient, so a non-root USER has them),
 * no masked or read-only paths, no seccomp filter, /sys and /sys/fs/cgroup writable, the
 * device cgroup open to every device, and the host's devices BuildKit adds (fuse, kmsg, loop...).
 * Returns a new spec; `spec` is not changed.
 */
export function withInsecureSecurity(spec: OciSpec, host: InsecureHost): InsecureOciSpec {
  const caps = [...host.capabilities];
  const { seccomp: _seccomp, ...linux } = spec.linux as OciSpec['linux'] & { seccomp?: unknown; resources?: Record<string, unknown> };
  return {
    ...spec,
    process: {
      ...spec.process,
      capabilities: { bounding: [...caps], effective: [...caps], permitted: [...caps], inheritable: [...caps], ambient: [...caps] },
    },
    mounts: spec.mounts.map(writableSysfs),
    linux: {
      ...linux,
      maskedPaths: [],
      readonlyPaths: [],
      devices: host.devices.map((d) => ({ ...d })),
      resources: {
        ...(linux.resources ?? {}),
        devices: [
          { allow: true, type: 'c', access: 'rwm' },
          { allow: true, type: 'b', access: 'rwm' },
        ],
      },
    },
  };
}

function writableSysfs(m: OciMount): OciMount {
  if (m.destination !== '/sys' && m.destination !== '/sys/fs/cgroup') return m;
  return { ...m, options: m.options.filter((o) => o !== 'ro') };
}
