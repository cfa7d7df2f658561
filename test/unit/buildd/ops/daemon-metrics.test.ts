import { DaemonMetrics } from '../../../../buildd/ops/daemon-metrics';
import { isLoopback, parseHostPort } from '../../../../buildd/ops/debug-server';

async function value(m: DaemonMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await m.registry.getSingleMetric(name)?.get();
  // the value whose labels include `labels` (the only one of an unlabelled metric)
  const found = metric?.values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return found?.value ?? 0;
}

describe('DaemonMetrics', () => {
  it('counts steps from progress: a cached vertex is a hit, a run one a miss with its duration; internal vertices are not steps', async () => {
    const m = new DaemonMetrics();
    const b = m.buildStarted();
    expect(await value(m, 'buildd_active_builds')).toBe(1);
    b.progress({ type: 'vertex', digest: 'ctx', name: '[internal] load build context', started: 1, cached: false });
    b.progress({ type: 'vertex', digest: 'ctx', name: '[internal] load build context', started: 1, completed: 2, cached: false });
    b.progress({ type: 'vertex', digest: 'from', name: '[1/3] FROM localhost:5000/busybox', started: 1000, completed: 1000, cached: true });
    b.progress({ type: 'vertex', digest: 'run', name: '[build 2/3] RUN make', started: 1000, cached: false });
    expect(await value(m, 'buildd_active_steps')).toBe(1);
    b.progress({ type: 'log', vertex: 'run', stream: 1, data: Buffer.from('x') });
    b.progress({ type: 'vertex', digest: 'run', name: '[build 2/3] RUN make', started: 1000, completed: 3500, cached: false });
    b.progress({ type: 'vertex', digest: 'bad', name: '[3/3] RUN false', started: 4000, cached: false });
    b.progress({ type: 'vertex', digest: 'bad', name: '[3/3] RUN false', started: 4000, completed: 4100, cached: false, error: 'exit code: 1' });
    b.contextBytes(1234);
    b.end('failed', 'unknown');
    b.end('failed', 'unknown'); // a second end changes nothing
    expect(await value(m, 'buildd_cache_hits_total')).toBe(1);
    expect(await value(m, 'buildd_cache_misses_total')).toBe(1);
    expect(await value(m, 'buildd_active_steps')).toBe(0);
    expect(await value(m, 'buildd_active_builds')).toBe(0);
    expect(await value(m, 'buildd_context_received_bytes_total')).toBe(1234);
    expect(await value(m, 'buildd_builds_finished_total', { status: 'failed' })).toBe(1);
    expect(await value(m, 'buildd_builds_finished_total', { status: 'succeeded' })).toBe(0);
    expect(await value(m, 'buildd_builds_failed_total', { reason: 'unknown' })).toBe(1);
    const steps = await m.registry.getSingleMetric('buildd_step_duration_seconds')?.get();
    const sum = (status: string): number | undefined => steps?.values.find((v) => (v as { metricName?: string }).metricName === 'buildd_step_duration_seconds_sum' && v.labels['status'] === status)?.value;
    expect(sum('succeeded')).toBeCloseTo(2.5);
    expect(sum('failed')).toBeCloseTo(0.1);
  });

  it('a build that ends with steps still running leaves no active step behind', async () => {
    const m = new DaemonMetrics();
    const b = m.buildStarted();
    b.progress({ type: 'vertex', digest: 'a', name: '[1/2] RUN sleep', started: 1, cached: false });
    b.progress({ type: 'vertex', digest: 'a', name: '[1/2] RUN sleep', started: 1, cached: false });
    b.progress({ type: 'vertex', digest: 'b', name: '[2/2] RUN sleep', started: 1, cached: false });
    expect(await value(m, 'buildd_active_steps')).toBe(2);
    b.end('cancelled', 'cancelled');
    expect(await value(m, 'buildd_active_steps')).toBe(0);
    expect(await value(m, 'buildd_builds_finished_total', { status: 'cancelled' })).toBe(1);
  });

  it('counts registry bytes by direction, GC runs, and reads the store sizes at scrape time', async () => {
    const m = new DaemonMetrics();
    m.blobTransferred('pull', 100);
    m.blobTransferred('push', 7);
    m.gcRan(4096);
    m.gcRan(0);
    let content = 10;
    m.watchStorage(() => ({ content: content++, snapshots: 20 }));
    expect(await value(m, 'buildd_registry_blob_bytes_total', { direction: 'pull' })).toBe(100);
    expect(await value(m, 'buildd_registry_blob_bytes_total', { direction: 'push' })).toBe(7);
    expect(await value(m, 'buildd_gc_runs_total')).toBe(2);
    expect(await value(m, 'buildd_gc_freed_bytes_total')).toBe(4096);
    const text = await m.registry.metrics();
    expect(text).toMatch(/^buildd_content_store_bytes 10$/m);
    expect(text).toMatch(/^buildd_snapshot_bytes 20$/m);
    // two daemons in one process keep their own counters
    expect(await value(new DaemonMetrics(), 'buildd_gc_runs_total')).toBe(0);
  });
});

describe('parseHostPort (--debugaddr)', () => {
  it('takes host:port, [v6]:port and tcp://host:port, and refuses the rest naming the flag', () => {
    expect(parseHostPort('127.0.0.1:6060')).toEqual({ host: '127.0.0.1', port: 6060 });
    expect(parseHostPort('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseHostPort('tcp://localhost:1')).toEqual({ host: 'localhost', port: 1 });
    for (const bad of ['6060', 'host:', 'host:99999', 'unix:///x', 'a b:1']) expect(() => parseHostPort(bad)).toThrow(/Cannot parse --debugaddr/);
  });
});

describe('isLoopback (who may take profiles)', () => {
  it('takes loopback addresses as a socket reports them, and nothing else', () => {
    for (const a of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', 'localhost']) expect(isLoopback(a)).toBe(true);
    for (const a of ['10.0.0.5', '::ffff:10.0.0.5', '0.0.0.0', '', '::', '1127.0.0.1']) expect(isLoopback(a)).toBe(false);
  });
});
