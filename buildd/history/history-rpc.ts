import { once } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BuildError, toBuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { buildErrorToStatus } from '../api/grpc-status';
import { encodeProgress } from '../api/progress-codec';
import type { ServerMessage } from '../api/server-messages';
import type { WorkerRecord } from '../ops/worker-record';
import { readHistoryLog } from './history-log';
import type { HistoryRecord, HistoryStore } from './history-store';

const refRequestSchema = z.object({ ref: z.string().max(128) }).passthrough();

/**
 * ListHistory, HistoryLogs and ListWorkers of the Control service. Without a history store (a
 * builder that keeps no state) the history calls fail as FAILED_PRECONDITION. Requests are
 * checked before use; a replay stops when its client goes away.
 */
export function debugHandlers(history: () => Promise<HistoryStore | undefined>, worker: WorkerRecord | undefined, log: Logger): grpc.UntypedServiceImplementation {
  const store = async (): Promise<HistoryStore> => {
    const h = await history();
    if (h === undefined) throw new BuildError('failed-precondition', 'Cannot read the build history: this daemon keeps none');
    return h;
  };
  return {
    ListHistory: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      void (async () => {
        const req = refRequestSchema.safeParse(call.request);
        if (!req.success) throw new BuildError('invalid-argument', `Cannot list the build history: ${describeZodError(req.error)}`);
        const records = (await store()).list(req.data.ref === '' ? undefined : req.data.ref);
        cb(null, { records: records.map(toMessage) });
      })().catch((err: unknown) => cb(buildErrorToStatus(toBuildError(err))));
    },
    HistoryLogs: (call: grpc.ServerWritableStream<unknown, ServerMessage>) => {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      call.on('close', () => abort.abort());
      void (async () => {
        const req = refRequestSchema.safeParse(call.request);
        if (!req.success) throw new BuildError('invalid-argument', `Cannot replay a build: ${describeZodError(req.error)}`);
        const file = (await store()).logFile(req.data.ref);
        if (file === undefined) throw new BuildError('not-found', `Cannot replay build ${req.data.ref}: no such build in the history (buildctl debug histories lists them)`);
        for await (const ev of readHistoryLog(file, abort.signal)) {
          // backpressure: a slow client holds the reading back; one that leaves ends the wait
          if (!call.write(encodeProgress(ev))) await once(call, 'drain', { signal: abort.signal });
        }
        call.end();
      })().catch((err: unknown) => {
        if (abort.signal.aborted) return;
        const be = toBuildError(err);
        log.info({ code: be.code, err: be.message }, 'history replay failed');
        call.emit('error', buildErrorToStatus(be));
      });
    },
    ListWorkers: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      if (worker === undefined) return cb(buildErrorToStatus(new BuildError('failed-precondition', 'Cannot list workers: this daemon has none')));
      cb(null, {
        workers: [
          {
            id: worker.id,
            platforms: worker.platforms.map((p) => ({ os: p.os, architecture: p.architecture, variant: p.variant ?? '' })),
            labels: worker.labels,
            gc_policy: worker.gcPolicy.map((r) => ({
              all: r.all ?? false,
              filters: (r.filters ?? []).map((f) => `${f.key}${f.op}${f.value}`),
              keep_duration_ms: r.keepDurationMs ?? 0,
              keep_bytes: r.keepBytes ?? 0,
            })),
            executor: worker.executor,
            snapshotter: worker.snapshotter,
            max_parallelism: worker.maxParallelism,
          },
        ],
      });
    },
  };
}

function toMessage(r: HistoryRecord): object {
  return {
    ref: r.ref,
    status: r.status,
    started_ms: r.startedAt,
    completed_ms: r.completedAt ?? 0,
    frontend: r.frontend,
    frontend_attrs: r.frontendAttrs,
    outputs: r.outputs.map((o) => ({ type: o.type, attrs: o.attrs })),
    error: r.error ?? '',
    steps: r.steps,
    cached_steps: r.cachedSteps,
    exporter_response: r.exporterResponse,
    logs_truncated: r.logTruncated,
  };
}
