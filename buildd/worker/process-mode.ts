import type { OciMount, OciSpec } from './oci-spec';

/**
 * How a RUN step's processes are kept apart from the daemon's, BuildKit's ProcessMode with its
 * names (worker label `org.mobyproject.buildkit.worker.oci.process-mode`):
 * - 'sandbox': a PID namespace of the step's own and a fresh procfs on /proc;
 * - 'no-sandbox' (`--oci-worker-no-process-sandbox`): the daemon's PID namespace, and the
 *   daemon's /proc (and /sys) bind-mounted. For a rootless daemon in a container whose /proc the runtime
 *   masked (Kubernetes without procMount: Unmasked): there the kernel refuses a new procfs in
 *   a user namespace (fs/namespace.c mount_too_revealing), so a 'sandbox' step cannot start.
 *   The step can see, signal and (same uid) ptrace the daemon's processes.
 */
export type ProcessMode = 'sandbox' | 'no-sandbox';

/**
 * The spec of a 'no-sandbox' step, as BuildKit's withBoundProc: no `pid` namespace, /proc a
 * recursive bind of the daemon's (the runtime's masks come along, locked), and no masked or
 * read-only path under /proc: runc would mount over paths the runtime may have covered
 * already, and a rootless step cannot change the kernel knobs they guard anyway.
 *
 * /sys too becomes a recursive bind of the daemon's, read-only unless the step is insecure: the
 * runtime masks /sys/firmware as well, so the kernel refuses a fresh sysfs for the same reason.
 * BuildKit's rootless steps never meet this: they use the host's network namespace by default,
 * and runc binds /sys for a rootless container without a network namespace. A step still has a
 * network namespace of its own here; its /sys/class/net lists the daemon's interfaces. The
 * masks under /sys (/sys/firmware, ...) stay. Returns a new spec; `spec` is not changed.
 */
export function withoutProcessSandbox<S extends OciSpec>(spec: S): S {
  // "rbind" with "ro" would not make the submounts read-only, so it is not pretended
  const proc: OciMount = { destination: '/proc', type: 'bind', source: '/proc', options: ['rbind'] };
  const sysfs = (m: OciMount): OciMount => (m.destination === '/sys' && m.type === 'sysfs' ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', ...m.options] } : { ...m, options: [...m.options] });
  return {
    ...spec,
    mounts: [proc, ...spec.mounts.filter((m) => !underProc(m.destination)).map(sysfs)],
    linux: {
      ...spec.linux,
      namespaces: spec.linux.namespaces.filter((n) => n.type !== 'pid').map((n) => ({ ...n })),
      maskedPaths: spec.linux.maskedPaths.filter((p) => !underProc(p)),
      readonlyPaths: spec.linux.readonlyPaths.filter((p) => !underProc(p)),
    },
  };
}

function underProc(p: string): boolean {
  return p === '/proc' || p.startsWith('/proc/');
}

/** What to do when a step fails because its /proc cannot be mounted: said at start and with the step's error. */
export const MASKED_PROC_HINT =
  "the kernel refuses a new /proc in the step's PID namespace, as it does in a container whose /proc is masked (Kubernetes without procMount: Unmasked, Docker without --security-opt systempaths=unconfined); start buildd with --oci-worker-no-process-sandbox (steps then share the daemon's PID namespace; see the README, Troubleshooting)";

/** runc's message for a procfs it could not mount on the step's /proc (runc 1.1: `mount proc:/proc (via /proc/self/fd/N), flags: 0xe: operation not permitted`). */
export function isProcMountFailure(runcMessage: string): boolean {
  return /(mounting "proc" to rootfs|mount proc:\/proc)[^]*(operation not permitted|permission denied)/i.test(runcMessage);
}
