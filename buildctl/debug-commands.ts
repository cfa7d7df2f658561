import type * as grpc from '@grpc/grpc-js';
import { listHistoryResponseSchema, listWorkersResponseSchema, type HistoryRecordMessage, type WorkerRecordMessage } from '../buildd/api/debug-messages';
import { statusToBuildError } from '../buildd/api/grpc-status';
import { decodeProgress } from '../buildd/api/progress-codec';
import { serverMessageSchema } from '../buildd/api/server-messages';
import { humanSize } from '../buildd/locals/transfer-progress';
import { BuildError } from '../solver/build-error';
import { describeZodError } from '../solver/describe-zod-error';
import type { ProgressRenderer } from './progress-renderer';

/** `buildctl debug histories|logs|workers` as parsed. */
export type DebugCommand =
  | { kind: 'histories'; ref?: string; format: 'table' | 'json' }
  | { kind: 'logs'; ref: string; progress: 'auto' | 'plain' | 'tty' | 'rawjson' }
  | { kind: 'workers'; verbose: boolean; format: 'table' | 'json' };

type Out = (s: string) => void;
type Unary = (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

function unary(client: grpc.Client, method: 'ListHistory' | 'ListWorkers', req: object): Promise<unknown> {
  const call = (client as unknown as Record<string, Unary>)[method] as Unary;
  return new Promise((resolve, reject) =>
    call.call(client, req, { deadline: new Date(Date.now() + 60_000) }, (err, res) => (err ? reject(statusToBuildError(err)) : resolve(res))),
  );
}

/** Past and running builds, newest first: a table, or the records as JSON. */
export async function runHistories(client: grpc.Client, cmd: Extract<DebugCommand, { kind: 'histories' }>, out: Out): Promise<void> {
  const parsed = listHistoryResponseSchema.safeParse(await unary(client, 'ListHistory', { ref: cmd.ref ?? '' }));
  if (!parsed.success) throw new BuildError('internal', `Cannot read the build history: ${describeZodError(parsed.error)}`);
  const records = parsed.data.records;
  if (cmd.format === 'json') return out(JSON.stringify(records, null, 2) + '\n');
  const rows = records.map((r) => [r.ref, r.status, new Date(r.started_ms).toISOString().replace(/\.\d+Z$/, 'Z'), duration(r), r.frontend, outputs(r), cached(r)]);
  out(table([['REF', 'STATUS', 'STARTED', 'DURATION', 'FRONTEND', 'OUTPUTS', 'CACHED'], ...rows]));
}

/**
 * Replays a kept build's progress through the renderer the build would have used, on the
 * build's own clock: each event's recorded time, so durations and log offsets read as they did.
 */
export async function runLogs(client: grpc.Client, cmd: Extract<DebugCommand, { kind: 'logs' }>, makeRenderer: (now: () => number) => ProgressRenderer): Promise<void> {
  let clock = 0;
  const renderer = makeRenderer(() => clock);
  const c = client as unknown as { HistoryLogs(req: object): grpc.ClientReadableStream<unknown> };
  const stream = c.HistoryLogs({ ref: cmd.ref });
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (msg: unknown) => {
      const parsed = serverMessageSchema.safeParse(msg);
      const ev = parsed.success ? decodeProgress(parsed.data) : undefined;
      if (!ev) {
        stream.cancel();
        reject(new BuildError('internal', `Cannot replay build ${cmd.ref}: the daemon sent a message that is not progress`));
        return;
      }
      const at = ev.type === 'log' ? ev.at : ev.type === 'vertex' ? (ev.completed ?? ev.started) : undefined;
      if (at !== undefined && at > clock) clock = at;
      renderer.event(ev);
    });
    stream.on('error', (err: grpc.ServiceError) => reject(statusToBuildError(err)));
    stream.on('end', () => resolve());
  });
  renderer.end();
}

/** The daemon's workers, as BuildKit's `buildctl debug workers` prints them. */
export async function runWorkers(client: grpc.Client, cmd: Extract<DebugCommand, { kind: 'workers' }>, out: Out): Promise<void> {
  const parsed = listWorkersResponseSchema.safeParse(await unary(client, 'ListWorkers', {}));
  if (!parsed.success) throw new BuildError('internal', `Cannot read the daemon's workers: ${describeZodError(parsed.error)}`);
  const workers = parsed.data.workers;
  if (cmd.format === 'json') return out(JSON.stringify(workers, null, 2) + '\n');
  if (!cmd.verbose) return out(table([['ID', 'PLATFORMS'], ...workers.map((w) => [w.id, platforms(w)])]));
  for (const w of workers) {
    const lines = [
      `ID:\t\t${w.id}`,
      `Platforms:\t${platforms(w)}`,
      `Executor:\t${w.executor}`,
      `Snapshotter:\t${w.snapshotter}`,
      `Parallelism:\t${w.max_parallelism}`,
      'Labels:',
      ...Object.entries(w.labels)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `\t${k}:\t${v}`),
      'GC Policy rules:',
      ...w.gc_policy.flatMap((r) => [
        `\tAll:\t\t${r.all}`,
        ...(r.filters.length > 0 ? [`\tFilters:\t${r.filters.join(' ')}`] : []),
        ...(r.keep_duration_ms > 0 ? [`\tKeep Duration:\t${goDuration(r.keep_duration_ms)}`] : []),
        ...(r.keep_bytes > 0 ? [`\tKeep Bytes:\t${humanSize(r.keep_bytes)}`] : []),
      ]),
    ];
    out(lines.join('\n') + '\n\n');
  }
}

function platforms(w: WorkerRecordMessage): string {
  return w.platforms.map((p) => [p.os, p.architecture, p.variant].filter((s) => s !== '').join('/')).join(',');
}

function duration(r: HistoryRecordMessage): string {
  if (r.completed_ms === 0) return r.status === 'running' ? `${((Date.now() - r.started_ms) / 1000).toFixed(1)}s+` : '-';
  return `${((r.completed_ms - r.started_ms) / 1000).toFixed(1)}s`;
}

function outputs(r: HistoryRecordMessage): string {
  if (r.outputs.length === 0) return '-';
  return r.outputs.map((o) => (o.attrs['name'] ? `${o.type}:${o.attrs['name']}` : o.type)).join(',');
}

function cached(r: HistoryRecordMessage): string {
  if (r.steps === 0) return '-';
  return `${r.cached_steps}/${r.steps} (${Math.round((100 * r.cached_steps) / r.steps)}%)`;
}

/** As Go's time.Duration prints whole hours, minutes and seconds: 48h0m0s. */
function goDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m${s % 60}s`;
}

/** Columns padded as Go's tabwriter does for buildctl (at least 3 spaces between). */
function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3))).join('')).join('\n') + '\n';
}
