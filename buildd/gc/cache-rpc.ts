import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BuildError, toBuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { diskUsageRequestSchema, pruneRequestSchema, type UsageRecordMessage } from '../api/cache-messages';
import { buildErrorToStatus } from '../api/grpc-status';
import type { CacheManager } from './cache-manager';
import { parseRecordFilters } from './record-filter';
import type { UsageRecord } from './usage-record';

/**
 * The DiskUsage and Prune calls of the Control service over a CacheManager (or refused as
 * unimplemented when the builder keeps no cache). Requests are checked before anything runs;
 * a prune stops when its client goes away.
 */
export function cacheHandlers(manager: CacheManager | undefined, log: Logger): grpc.UntypedServiceImplementation {
  const unavailable = (): BuildError => new BuildError('failed-precondition', 'Cannot report or prune the cache: this daemon keeps no build cache');
  return {
    DiskUsage: (call: grpc.ServerUnaryCall<unknown, { record: UsageRecordMessage[] }>, cb: grpc.sendUnaryData<{ record: UsageRecordMessage[] }>) => {
      void (async () => {
        if (manager === undefined) throw unavailable();
        const req = diskUsageRequestSchema.safeParse(call.request);
        if (!req.success) throw new BuildError('invalid-argument', `Cannot report disk usage: ${describeZodError(req.error)}`);
        const records = await manager.usage(parseRecordFilters(req.data.filter));
        cb(null, { record: records.map(toMessage) });
      })().catch((err: unknown) => cb(buildErrorToStatus(toBuildError(err))));
    },
    Prune: (call: grpc.ServerWritableStream<unknown, UsageRecordMessage>) => {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort(new BuildError('cancelled', 'Cannot continue the prune: the client went away')));
      void (async () => {
        if (manager === undefined) throw unavailable();
        const req = pruneRequestSchema.safeParse(call.request);
        if (!req.success) throw new BuildError('invalid-argument', `Cannot prune: ${describeZodError(req.error)}`);
        const r = req.data;
        await manager.prune(
          {
            all: r.all,
            filters: parseRecordFilters(r.filter),
            ...(r.keep_duration_ms > 0 ? { keepDurationMs: r.keep_duration_ms } : {}),
            ...(r.keep_bytes > 0 ? { keepBytes: r.keep_bytes } : {}),
          },
          (record) => call.write(toMessage(record)),
          abort.signal,
        );
        call.end();
      })().catch((err: unknown) => {
        const be = toBuildError(err);
        log.info({ code: be.code, err: be.message }, 'prune failed');
        if (!call.cancelled) call.emit('error', buildErrorToStatus(be));
      });
    },
  };
}

function toMessage(r: UsageRecord): UsageRecordMessage {
  return {
    id: r.id,
    record_type: r.type,
    parent: r.parent ?? '',
    size: r.size,
    created_at: r.createdAt,
    last_used_at: r.lastUsedAt,
    usage_count: r.usageCount,
    description: r.description,
    in_use: r.inUse,
    shared: r.shared,
    mutable: r.mutable,
  };
}
