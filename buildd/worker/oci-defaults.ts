/**
 * Defaults of the container a RUN step gets, taken from Docker / containerd so that a build
 * behaves as it does under BuildKit.
 */

/** BuildKit sets this PATH when the image config has none (same as Docker's default). */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Docker's default capability set. Only bounding/effective/permitted get it: Docker dropped
 * inheritable (CVE-2022-24769) and never sets ambient, so a non-root user loses them at exec.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Docker's masked paths: kernel information a build has no business reading. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Docker's read-only paths: kernel knobs a build must not turn. */
export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * containerd's default (which BuildKit's runc worker inherits): 1024 both. Raising the hard
 * limit above the daemon's own would need CAP_SYS_RESOURCE, which a daemon may not have.
 */
export const DEFAULT_NOFILE = { soft: 1024, hard: 1024 } as const;

export const DEFAULT_HOSTNAME = 'buildd';
