import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ProgressEvent } from '../builder';
import { isStepVertex } from './step-vertex';

/** How a build ended, as the metrics label it. */
export type BuildOutcome = 'succeeded' | 'failed' | 'cancelled';

/** The store sizes a scrape reports (CacheManager.storedBytes). */
export type StoredBytes = () => { content: number; snapshots: number };


/**
 * The daemon's Prometheus metrics (prom-client, in a registry of their own so tests and several
 * daemons in one process never share counters). Names follow Prometheus' conventions: `_total`
 * counters, `_seconds` and `_bytes` units.
 *
 * Lifecycle: one per daemon, made at start; BuildService reports builds and their progress,
 * the registry client blob bytes, the GC its runs; the debug server scrapes `registry`.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly buildsStarted: Counter;
  private readonly buildsFinished: Counter<'status'>;
  private readonly buildsFailed: Counter<'reason'>;
  private readonly buildDuration: Histogram<'status'>;
  private readonly stepDuration: Histogram<'status'>;
  private readonly cacheHits: Counter;
  private readonly cacheMisses: Counter;
  private readonly contextBytes: Counter;
  private readonly blobBytes: Counter<'direction'>;
  private readonly activeBuilds: Gauge;
  private readonly activeSteps: Gauge;
  private readonly gcRuns: Counter;
  private readonly gcFreed: Counter;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'buildd_' });
    this.buildsStarted = new Counter({ name: 'buildd_builds_started_total', help: 'Builds started', registers });
    this.buildsFinished = new Counter({ name: 'buildd_builds_finished_total', help: 'Builds finished, by status (succeeded, failed, cancelled)', labelNames: ['status'], registers });
    this.buildsFailed = new Counter({ name: 'buildd_builds_failed_total', help: "Builds failed or cancelled, by reason (the error's code: invalid-argument, unavailable, cancelled...)", labelNames: ['reason'], registers });
    this.buildDuration = new Histogram({
      name: 'buildd_build_duration_seconds',
      help: 'Build durations, from the call to the result, by status',
      labelNames: ['status'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
    this.stepDuration = new Histogram({
      name: 'buildd_step_duration_seconds',
      help: 'Durations of Dockerfile steps that ran (not cached), by status',
      labelNames: ['status'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
      registers,
    });
    this.cacheHits = new Counter({ name: 'buildd_cache_hits_total', help: 'Dockerfile steps answered from the build cache', registers });
    this.cacheMisses = new Counter({ name: 'buildd_cache_misses_total', help: 'Dockerfile steps that ran', registers });
    this.contextBytes = new Counter({ name: 'buildd_context_received_bytes_total', help: 'Bytes of build contexts (locals) received from clients', registers });
    this.blobBytes = new Counter({ name: 'buildd_registry_blob_bytes_total', help: 'Bytes of blobs pulled from or pushed to registries, by direction', labelNames: ['direction'], registers });
    this.activeBuilds = new Gauge({ name: 'buildd_active_builds', help: 'Builds running now', registers });
    this.activeSteps = new Gauge({ name: 'buildd_active_steps', help: 'Dockerfile steps running now', registers });
    this.gcRuns = new Counter({ name: 'buildd_gc_runs_total', help: 'Automatic GC runs', registers });
    this.gcFreed = new Counter({ name: 'buildd_gc_freed_bytes_total', help: 'Bytes the automatic GC freed', registers });
    for (const s of ['succeeded', 'failed', 'cancelled']) this.buildsFinished.inc({ status: s }, 0);
    for (const d of ['pull', 'push']) this.blobBytes.inc({ direction: d }, 0);
  }

  /** Reports the stores' sizes at each scrape (read from the metadata database: no disk walk). Call once. */
  watchStorage(stored: StoredBytes): void {
    const registers = [this.registry];
    // read at every scrape (two sums over indexed rows): a value kept for a while would show a
    // scrape right after a build the sizes from before it
    new Gauge({ name: 'buildd_content_store_bytes', help: "Bytes of the content store's blobs", registers, collect() { this.set(stored().content); } });
    new Gauge({ name: 'buildd_snapshot_bytes', help: 'Bytes of committed snapshots measured so far (each is measured once, by du or GC)', registers, collect() { this.set(stored().snapshots); } });
  }

  /** A build began; the returned tracker follows its progress and must be ended exactly once. */
  buildStarted(): BuildTracker {
    this.buildsStarted.inc();
    this.activeBuilds.inc();
    const endTimer = Date.now();
    const running = new Map<string, number>();
    let ended = false;
    return {
      progress: (ev: ProgressEvent) => {
        if (ev.type !== 'vertex' || !isStepVertex(ev.name)) return;
        if (ev.completed === undefined) {
          if (ev.started !== undefined && !running.has(ev.digest)) {
            running.set(ev.digest, ev.started);
            this.activeSteps.inc();
          }
          return;
        }
        if (running.delete(ev.digest)) this.activeSteps.dec();
        if (ev.cached) return this.cacheHits.inc();
        if (ev.started === undefined) return;
        const status = ev.error === undefined ? 'succeeded' : 'failed';
        if (status === 'succeeded') this.cacheMisses.inc();
        this.stepDuration.observe({ status }, Math.max(0, ev.completed - ev.started) / 1000);
      },
      contextBytes: (bytes: number) => this.contextBytes.inc(bytes),
      end: (outcome: BuildOutcome, reason?: string) => {
        if (ended) return;
        ended = true;
        this.activeBuilds.dec();
        this.activeSteps.dec(running.size);
        running.clear();
        this.buildsFinished.inc({ status: outcome });
        if (outcome !== 'succeeded') this.buildsFailed.inc({ reason: reason ?? 'unknown' });
        this.buildDuration.observe({ status: outcome }, (Date.now() - endTimer) / 1000);
      },
    };
  }

  /** A blob moved in full to or from a registry (RegistryTransportOptions.onBlobBytes). */
  blobTransferred(direction: 'pull' | 'push', bytes: number): void {
    this.blobBytes.inc({ direction }, bytes);
  }

  /** One automatic GC run ended, having freed `bytes`. */
  gcRan(bytes: number): void {
    this.gcRuns.inc();
    this.gcFreed.inc(bytes);
  }
}

/** One build's reporting to DaemonMetrics. Lifecycle: from buildStarted to one `end`. */
export interface BuildTracker {
  progress(ev: ProgressEvent): void;
  contextBytes(bytes: number): void;
  end(outcome: BuildOutcome, reason?: string): void;
}
