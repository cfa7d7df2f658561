import type * as grpc from '@grpc/grpc-js';
import { diskUsageResponseSchema, usageRecordSchema, type UsageRecordMessage } from '../buildd/api/cache-messages';
import { statusToBuildError } from '../buildd/api/grpc-status';
import { BuildError } from '../solver/build-error';
import { describeZodError } from '../solver/describe-zod-error';
import { humanSize } from '../buildd/locals/transfer-progress';

/** `buildctl du` as parsed. */
export interface DuCommand {
  kind: 'du';
  filters: string[];
  verbose: boolean;
}

/** `buildctl prune` as parsed. */
export interface PruneCommand {
  kind: 'prune';
  filters: string[];
  all: boolean;
  keepDurationMs: number;
  keepBytes: number;
  verbose: boolean;
}

type Out = (s: string) => void;

/** Lists the cache as BuildKit's `buildctl du` prints it: a table (or every field with --verbose), then totals. */
export async function runDu(client: grpc.Client, cmd: DuCommand, out: Out): Promise<void> {
  const c = client as unknown as {
    DiskUsage(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void): void;
  };
  const res = await new Promise<unknown>((resolve, reject) =>
    c.DiskUsage({ filter: cmd.filters }, { deadline: new Date(Date.now() + 10 * 60_000) }, (err, r) => (err ? reject(statusToBuildError(err)) : resolve(r))),
  );
  const parsed = diskUsageResponseSchema.safeParse(res);
  if (!parsed.success) throw new BuildError('internal', `Cannot read the daemon's disk usage: ${describeZodError(parsed.error)}`);
  printRecords(parsed.data.record, cmd.verbose, out);
  printTotals(parsed.data.record, out);
}

/** Removes cache records, printing each as the daemon removes it, then what was freed. */
export async function runPrune(client: grpc.Client, cmd: PruneCommand, out: Out): Promise<void> {
  const c = client as unknown as { Prune(req: object): grpc.ClientReadableStream<unknown> };
  const stream = c.Prune({ filter: cmd.filters, all: cmd.all, keep_duration_ms: cmd.keepDurationMs, keep_bytes: cmd.keepBytes });
  const removed: UsageRecordMessage[] = [];
  if (!cmd.verbose) out(header());
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (msg: unknown) => {
      const r = usageRecordSchema.safeParse(msg);
      if (!r.success) {
        stream.cancel();
        reject(new BuildError('internal', `Cannot read what the daemon pruned: ${describeZodError(r.error)}`));
        return;
      }
      removed.push(r.data);
      out(cmd.verbose ? verbose(r.data) : row(r.data));
    });
    stream.on('error', (err: grpc.ServiceError) => reject(statusToBuildError(err)));
    stream.on('end', () => resolve());
  });
  out(`Total:\t${humanSize(removed.reduce((n, r) => n + r.size, 0))}\n`);
}

function printRecords(records: readonly UsageRecordMessage[], verboseOut: boolean, out: Out): void {
  if (verboseOut) {
    for (const r of records) out(verbose(r));
    return;
  }
  out(header());
  for (const r of records) out(row(r));
}

function printTotals(records: readonly UsageRecordMessage[], out: Out): void {
  const sum = (pick: (r: UsageRecordMessage) => boolean): number => records.filter(pick).reduce((n, r) => n + r.size, 0);
  out(`Shared:\t\t${humanSize(sum((r) => r.shared))}\n`);
  out(`Private:\t${humanSize(sum((r) => !r.shared))}\n`);
  out(`Reclaimable:\t${humanSize(sum((r) => !r.in_use))}\n`);
  out(`Total:\t\t${humanSize(sum(() => true))}\n`);
}

function header(): string {
  return `${'ID'.padEnd(40)} ${'RECLAIMABLE'.padEnd(12)} ${'SIZE'.padEnd(10)} LAST ACCESSED\n`;
}

/** A shared record's id ends in `*`, a mutable one's in `+`, as BuildKit marks them. */
function row(r: UsageRecordMessage): string {
  const id = r.id + (r.shared ? '*' : '') + (r.mutable ? '+' : '');
  return `${id.padEnd(40)} ${String(!r.in_use).padEnd(12)} ${humanSize(r.size).padEnd(10)} ${new Date(r.last_used_at).toISOString()}\n`;
}

function verbose(r: UsageRecordMessage): string {
  return [
    `ID:\t\t${r.id}`,
    ...(r.parent ? [`Parent:\t\t${r.parent}`] : []),
    `Created at:\t${new Date(r.created_at).toISOString()}`,
    `Mutable:\t${r.mutable}`,
    `Reclaimable:\t${!r.in_use}`,
    `Shared:\t\t${r.shared}`,
    `Size:\t\t${humanSize(r.size)}`,
    `Description:\t${r.description}`,
    `Usage count:\t${r.usage_count}`,
    `Last used:\t${new Date(r.last_used_at).toISOString()}`,
    `Type:\t\t${r.record_type}`,
    '',
    '',
  ].join('\n');
}
