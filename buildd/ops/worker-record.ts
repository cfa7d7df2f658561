import * as os from 'node:os';
import type { PruneOptions } from '../gc/prune-plan';

/** A platform as OCI names it. */
export interface WorkerPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

/** What `buildctl debug workers` shows of the daemon's one worker (BuildKit's WorkerRecord). Made once at start. */
export interface WorkerRecord {
  id: string;
  platforms: WorkerPlatform[];
  labels: Record<string, string>;
  gcPolicy: readonly PruneOptions[];
  executor: string;
  snapshotter: string;
  maxParallelism: number;
}

/** Steps run at once unless configured: the cores, at least two (a pull beside a RUN). */
export function defaultMaxParallelism(): number {
  return Math.max(2, os.cpus().length);
}

/** Node's `process.arch` as OCI's platform (GOARCH); undefined for one OCI has no name for. */
export function nativePlatform(arch: string = process.arch): WorkerPlatform | undefined {
  const known: Record<string, WorkerPlatform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
  };
  return known[arch];
}

/** The daemon's worker, with BuildKit's label names where they mean the same. */
export function workerRecord(opts: {
  rootless: boolean;
  noProcessSandbox?: boolean;
  snapshotter: string;
  gcPolicy: readonly PruneOptions[];
  maxParallelism?: number;
  network: string;
  /** what steps can run as, native first then emulated (WorkerPlatforms.runnable); the native one when absent */
  platforms?: readonly WorkerPlatform[];
}): WorkerRecord {
  const processMode = opts.noProcessSandbox ? 'no-sandbox' : 'sandbox';
  const native = nativePlatform();
  return {
    // one worker per daemon, named for the host as BuildKit's OCI worker is
    id: os.hostname(),
    platforms: opts.platforms ? [...opts.platforms] : native ? [native] : [],
    labels: {
      'org.mobyproject.buildkit.worker.executor': 'oci',
      'org.mobyproject.buildkit.worker.hostname': os.hostname(),
      'org.mobyproject.buildkit.worker.network': opts.network,
      // BuildKit's values: sandbox, no-sandbox
      'org.mobyproject.buildkit.worker.oci.process-mode': processMode,
      'org.mobyproject.buildkit.worker.snapshotter': opts.snapshotter,
      'org.mobyproject.buildkit.worker.rootless': String(opts.rootless),
    },
    gcPolicy: opts.gcPolicy,
    executor: `runc${executorNotes(opts.rootless, processMode)}`,
    snapshotter: opts.snapshotter,
    maxParallelism: opts.maxParallelism ?? defaultMaxParallelism(),
  };
}

/** `runc (rootless, no process sandbox)`: what an operator must know of the steps' isolation. */
function executorNotes(rootless: boolean, processMode: 'sandbox' | 'no-sandbox'): string {
  const notes = [...(rootless ? ['rootless'] : []), ...(processMode === 'no-sandbox' ? ['no process sandbox'] : [])];
  return notes.length === 0 ? '' : ` (${notes.join(', ')})`;
}
