import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BuildError, toBuildError } from '../solver/build-error';
import { buildErrorToStatus } from './api/grpc-status';
import { clientMessageSchema, describeZodError, SESSION_MESSAGES, type BuildStartMessage, type ClientMessage, type SessionClientMessage } from './api/messages';
import { encodeProgress } from './api/progress-codec';
import type { InfoResponse, ServerMessage } from './api/server-messages';
import type { Builder, BuildRequest, BuildSession, ProgressEvent } from './builder';
import { CallWriter } from './call-writer';
import { createExportStream } from './export-stream';
import { CacheManager } from './gc/cache-manager';
import { cacheHandlers } from './gc/cache-rpc';
import { GcRunner } from './gc/gc-runner';
import type { PruneOptions } from './gc/prune-plan';
import { LocalsReceiver } from './locals-receiver';
import { KeyedLocalsReceiver } from './locals/keyed-locals-receiver';
import type { LocalTransfer } from './locals/transfer-types';
import { LocalsStore } from './locals/locals-store';
import { storeKey } from './locals/store-key';
import { withTransferProgress, type TransferReport } from './locals/transfer-progress';
import { MessageReader } from './message-reader';
import { removeTree } from './remove-tree';
import { ClientSession } from './session/client-session';
import type { FileDigestCache } from '../store/file-digest-cache';
import { builddVersion } from './version';
import type { BuildTracker, DaemonMetrics } from './ops/daemon-metrics';
import type { WorkerRecord } from './ops/worker-record';
import { BuildSpans, remoteContext, traceCarrierOf } from './ops/build-spans';
import { logStep } from './ops/step-log';
import { debugHandlers } from './history/history-rpc';
import { DEFAULT_HISTORY_LIMITS, HistoryStore, type BuildHistory, type HistoryLimits } from './history/history-store';

export interface BuildServiceOptions {
  builder: Builder;
  /** daemon root; sessions live in `<root>/sessions/<ref>` */
  root: string;
  logger: Logger;
  /** bounds of the kept copies of keyed locals (`<root>/locals`); defaults when absent */
  keptLocals?: { maxKeys?: number; maxBytes?: number };
  /** where the digests of received files go (the process's cache, which COPY checksums read, when absent) */
  fileDigests?: FileDigestCache;
  /** the automatic GC's rules (gcRules), run after each build; none: no automatic GC */
  gcRules?: readonly PruneOptions[];
  /** how long after a build the GC runs at the earliest (gcDelayMs) */
  gcDelayMs?: number;
  /** the daemon's Prometheus metrics: builds, steps, context bytes, store sizes, GC runs */
  metrics?: DaemonMetrics;
  /** how much build history is kept (`<root>/history`); defaults when absent */
  historyLimits?: HistoryLimits;
  /** what `buildctl debug workers` shows; undefined: the call fails */
  worker?: WorkerRecord;
}

type BuildCall = grpc.ServerDuplexStream<unknown, ServerMessage>;

/**
 * The Control service: receives a build's locals into a session directory, runs
 * `Builder.build` with a session bound to the call, and streams progress and exports back.
 *
 * Lifecycle: one per daemon. `handlers()` is registered on the gRPC server; `shutdown()`
 * aborts every running build and resolves when all have settled (session dirs removed).
 */
export class BuildService {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void>; started: number }>();
  private readonly root: string;
  private readonly version = builddVersion();
  private closing = false;
  /** opened at construction, so temp dirs a killed daemon left go at start, not at the first build */
  private readonly store: Promise<LocalsStore>;
  /** du, prune and GC over the builder's stores (undefined when it keeps none) */
  readonly cache: CacheManager | undefined;
  /** the automatic GC, asked to run after each build */
  readonly gc: GcRunner | undefined;
  /** past builds (buildctl debug histories), in the builder's meta.db */
  readonly history: Promise<HistoryStore | undefined>;

  constructor(private readonly opts: BuildServiceOptions) {
    this.root = path.resolve(opts.root);
    this.store = LocalsStore.open({
      dir: path.join(this.root, 'locals'),
      ...opts.keptLocals,
      onError: (err, dir) => opts.logger.error({ err: err.message, dir }, 'cannot remove a kept local'),
    });
    // a store that cannot open fails the builds that need it, with its reason; never the daemon
    this.store.catch((err: Error) => opts.logger.error({ err: err.message }, 'cannot open the kept locals'));
    const storage = opts.builder.storage;
    this.cache = storage && new CacheManager(storage, () => this.oldestBuild(), () => this.store.catch(() => undefined), opts.logger);
    this.gc = this.cache && new GcRunner(this.cache, opts.gcRules ?? [], opts.logger, opts.gcDelayMs ?? 60_000, (freed) => opts.metrics?.gcRan(freed));
    const cache = this.cache;
    if (cache) opts.metrics?.watchStorage(() => cache.storedBytes());
    // a history that cannot open costs the history, never a build
    this.history = storage
      ? HistoryStore.open(storage.meta, path.join(this.root, 'history'), opts.historyLimits ?? DEFAULT_HISTORY_LIMITS, opts.logger).catch((err: Error) => {
          opts.logger.error({ err: err.message }, 'cannot open the build history');
          return undefined;
        })
      : Promise.resolve(undefined);
  }

  /** When the oldest running build started: what it may hold is kept by GC (see CacheManager). */
  oldestBuild(): number | undefined {
    let oldest: number | undefined;
    for (const b of this.running.values()) if (oldest === undefined || b.started < oldest) oldest = b.started;
    return oldest;
  }

  /** The kept copies of keyed locals (for du/prune and tests). */
  keptLocals(): Promise<LocalsStore> {
    return this.store;
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      Build: (call: BuildCall) => this.startBuild(call),
      Info: (_call: grpc.ServerUnaryCall<unknown, InfoResponse>, cb: grpc.sendUnaryData<InfoResponse>) =>
        cb(null, { version: this.version, api: 'buildd.v1' }),
      ...cacheHandlers(this.cache, this.opts.logger),
      ...debugHandlers(() => this.history, this.opts.worker, this.opts.logger),
    };
  }

  /** Number of builds in flight (for logs and tests). */
  runningBuilds(): number {
    return this.running.size;
  }

  /**
   * Refuses new builds from now on (UNAVAILABLE), lets running ones finish for up to `graceMs`,
   * then cancels what still runs and resolves once every build has settled.
   */
  async shutdown(graceMs = 0): Promise<void> {
    this.closing = true;
    const all = [...this.running.values()];
    if (all.length > 0 && graceMs > 0) {
      this.opts.logger.info({ builds: all.length, graceMs }, 'waiting for running builds to finish');
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([Promise.allSettled(all.map((b) => b.done)), graceOver]);
      clearTimeout(timer);
    }
    const left = [...this.running.values()];
    const why = graceMs > 0 ? `the daemon is shutting down and its grace period of ${graceMs / 1000}s is over` : 'the daemon is shutting down';
    for (const b of left) b.abort.abort(new BuildError('cancelled', `Cannot continue: ${why}`));
    await Promise.allSettled(left.map((b) => b.done));
    await this.gc?.stop();
  }

  private startBuild(call: BuildCall): void {
    // before anything of the build runs: GC keeps what it touches from here on
    const started = Date.now();
    const ref = randomUUID();
    const abort = new AbortController();
    if (this.closing) abort.abort(new BuildError('unavailable', 'Cannot start a build: the daemon is shutting down (running builds are finishing); retry on another instance or after the restart'));
    call.on('cancelled', () => abort.abort(new BuildError('cancelled', 'Cannot continue: the client went away')));
    const spans = BuildSpans.start(remoteContext(traceCarrierOf(call.metadata)), ref);
    const done = spans.run(() => this.runBuild(call, ref, abort, this.opts.metrics?.buildStarted(), spans)).finally(() => {
      this.running.delete(ref);
      if (!this.closing) this.gc?.request();
    });
    this.running.set(ref, { abort, done, started });
  }

  private async runBuild(call: BuildCall, ref: string, abort: AbortController, tracker: BuildTracker | undefined, spans: BuildSpans): Promise<void> {
    const log = this.opts.logger.child({ build: ref });
    const writer = new CallWriter(call);
    abort.signal.addEventListener('abort', () => writer.close(), { once: true });
    const reader = new MessageReader(call);
    const sessionDir = path.join(this.root, 'sessions', ref);
    let receiver: LocalsReceiver | undefined;
    let keyed: KeyedLocalsReceiver | undefined;
    let clientSession: ClientSession | undefined;
    let history: BuildHistory | undefined;
    let ended: Promise<void> | undefined;
    try {
      throwIfAborted(abort.signal);
      const start = await this.readStart(reader);
      log.info({ frontend: start.frontend, locals: start.local_names }, 'build started');
      history = await this.recordStart(ref, start, log);
      spans.describe({ 'buildd.build.frontend': start.frontend, 'buildd.build.outputs': start.exports.map((e) => e.type).join(',') });
      await fsp.mkdir(path.dirname(sessionDir), { recursive: true, mode: 0o700 });
      await fsp.mkdir(sessionDir, { mode: 0o700 });
      receiver = new LocalsReceiver(sessionDir, start.local_names.filter((n) => !Object.hasOwn(start.local_keys, n)));
      await receiver.prepare();
      const chown = typeof process.getuid === 'function' && process.getuid() === 0;
      const request = (r: { local: string; paths: string[]; done: boolean }): Promise<void> => writer.send({ msg: 'file_request', file_request: r });
      const peer = peerIdentity(call);
      const keys = Object.fromEntries(Object.entries(start.local_keys).map(([local, key]) => [local, storeKey(peer, key)]));
      // a build without keyed locals never waits on (or fails with) the store
      const store = Object.keys(keys).length > 0 ? await this.store : undefined;
      keyed = new KeyedLocalsReceiver(store, keys, request, abort.signal, chown, this.opts.fileDigests);
      const localsStarted = Date.now();
      const transfers = await this.receiveLocals(reader, receiver, keyed, abort.signal);
      for (const t of transfers) log.info(t, 'local synced');
      const reports: TransferReport[] = start.local_names.map((local) => {
        const moved = transfers.find((t) => t.local === local);
        const full = receiver?.received.get(local);
        const files = moved ? moved.filesReceived : (full?.files ?? 0);
        const bytes = moved ? moved.bytesReceived : (full?.bytes ?? 0);
        return { local, started: localsStarted, completed: Date.now(), files, bytes };
      });
      clientSession = new ClientSession((msg) => writer.send(msg), new Set(start.ssh_ids), start.forward_credentials);
      // Only session messages may follow locals_done; a stray one fails the build instead of being ignored.
      void this.serveSession(reader, clientSession, abort);

      const req: BuildRequest = {
        ref,
        frontend: start.frontend,
        frontendAttrs: start.frontend_attrs,
        locals: { ...receiver.localDirs(), ...keyed.localDirs() },
        exports: start.exports.map((e) => ({ type: e.type, attrs: e.attrs })),
        noCache: start.no_cache,
        cacheExports: start.cache_exports.map((c) => ({ type: c.type, attrs: c.attrs, ...(c.present.length > 0 ? { present: c.present } : {}) })),
        cacheImports: start.cache_imports.map((c) => ({ type: c.type, attrs: c.attrs })),
        entitlements: start.entitlements,
      };
      tracker?.contextBytes(reports.reduce((n, r) => n + r.bytes, 0));
      const session = this.session(writer, abort.signal, {
        progress: (ev) => {
          tracker?.progress(ev);
          history?.progress(ev);
          spans.progress(ev);
          logStep(log, ev);
        },
      });
      session.progress = withTransferProgress(session.progress, reports);
      const result = await this.opts.builder.build(req, { ...session, attachables: clientSession, clientCache: clientSession });
      throwIfAborted(abort.signal);
      await writer.send({ msg: 'result', result: { exporter_response: result } });
      await writer.flush();
      log.info('build done');
      tracker?.end('succeeded');
      spans.end('succeeded');
      call.end();
      ended = history?.end('completed', undefined, result);
    } catch (err) {
      const reason: unknown = abort.signal.aborted ? abort.signal.reason : undefined;
      const be = reason instanceof BuildError ? reason : toBuildError(err);
      log.info({ code: be.code, err: be.message }, 'build failed');
      tracker?.end(be.code === 'cancelled' ? 'cancelled' : 'failed', be.code);
      spans.end(be.code === 'cancelled' ? 'cancelled' : 'failed', be.message);
      ended = history?.end(be.code === 'cancelled' ? 'cancelled' : 'failed', be.message);
      await writer.flush();
      writer.close();
      if (!call.cancelled) call.emit('error', buildErrorToStatus(be));
    } finally {
      clientSession?.close();
      writer.close();
      await receiver?.abort();
      await keyed?.abort();
      keyed?.release();
      await removeTree(sessionDir).catch((err: Error) => log.error({ err: err.message, dir: sessionDir }, 'cannot remove session dir'));
      await ended?.catch((err: Error) => log.warn({ err: err.message }, 'cannot record the build in the history'));
    }
  }

  /** The build's history record from its start message; undefined when the history cannot take it. */
  private async recordStart(ref: string, start: BuildStartMessage, log: Logger): Promise<BuildHistory | undefined> {
    try {
      return (await this.history)?.begin({
        ref,
        frontend: start.frontend,
        frontendAttrs: start.frontend_attrs,
        outputs: start.exports.map((e) => ({ type: e.type, attrs: e.attrs })),
      });
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot record the build in the history');
      return undefined;
    }
  }

  /** `observer`: who else sees the build's progress (metrics, history, spans) */
  private session(writer: CallWriter, signal: AbortSignal, observer: { progress(ev: ProgressEvent): void }): BuildSession {
    let exported = false;
    return {
      progress: (ev) => {
        observer.progress(ev);
        writer.progress(encodeProgress(ev));
      },
      exportStream: () => {
        if (exported) throw new BuildError('internal', 'Cannot open the export stream: it was already opened for this build');
        exported = true;
        return createExportStream(writer);
      },
      signal,
    };
  }

  private async readStart(reader: MessageReader): Promise<BuildStartMessage> {
    const msg = await this.readMessage(reader);
    if (msg === null) throw new BuildError('invalid-argument', 'Cannot start the build: the client sent no start message');
    if (msg.msg !== 'start') throw new BuildError('invalid-argument', `Cannot start the build: the first message is ${msg.msg}, not start`);
    return msg.start;
  }

  /**
   * Routes the locals' messages: entries of a keyed local (its listing), listing_done and file
   * headers to the keyed receiver, other entries to the full-transfer one, data to whichever has
   * a file open. Any other message first closes the open file, which must then be whole.
   */
  private async receiveLocals(reader: MessageReader, receiver: LocalsReceiver, keyed: KeyedLocalsReceiver, signal: AbortSignal): Promise<LocalTransfer[]> {
    await keyed.begin();
    for (;;) {
      throwIfAborted(signal);
      const msg = await this.readMessage(reader);
      if (msg === null) throw new BuildError('invalid-argument', 'Cannot receive locals: the stream ended before locals_done');
      if (msg.msg !== 'data') {
        await receiver.settle();
        await keyed.settle();
      }
      switch (msg.msg) {
        case 'entry':
          if (keyed.handles(msg.entry.local)) await keyed.listed([msg.entry]);
          else await receiver.entry(msg.entry);
          break;
        case 'entries':
        case 'listing': {
          const list = msg.msg === 'entries' ? msg.entries.entries : msg.listing.entries;
          const stray = list.find((e) => !keyed.handles(e.local));
          if (stray) throw new BuildError('invalid-argument', `Cannot receive ${stray.local}/${stray.path}: only the listing of a keyed local may come in a batch of entries`);
          await keyed.listed(list);
          break;
        }
        case 'data':
          if (keyed.hasOpenFile()) await keyed.data(msg.data.data);
          else await receiver.data(msg.data.data);
          break;
        case 'listing_done':
          await keyed.listingDone(msg.listing_done.local);
          break;
        case 'file':
          await keyed.file(msg.file.local, msg.file.path);
          break;
        case 'locals_done':
          await receiver.finish();
          return keyed.finish();
        case 'start':
          throw new BuildError('invalid-argument', 'Cannot receive locals: a second start message');
      }
    }
  }

  /**
   * Reads the client's session messages (secret values, ssh agent data) one at a time, each
   * handled before the next is read, so a slow ssh socket holds the client back. A client that
   * half-closes simply lends nothing more; any other message fails the build.
   */
  private async serveSession(reader: MessageReader, session: ClientSession, abort: AbortController): Promise<void> {
    try {
      for (;;) {
        const msg = await this.readMessage(reader);
        if (abort.signal.aborted) return;
        if (msg === null) return session.clientDone();
        if (!isSessionMessage(msg)) {
          throw new BuildError('invalid-argument', 'Cannot continue the build: the client sent a message after locals_done');
        }
        await session.handle(msg);
      }
    } catch (err) {
      if (!abort.signal.aborted) abort.abort(toBuildError(err));
    }
  }

  private async readMessage(reader: MessageReader): Promise<ClientMessage | null> {
    const raw = await reader.next();
    if (raw === null) return null;
    const parsed = clientMessageSchema.safeParse(raw);
    if (!parsed.success) throw new BuildError('invalid-argument', `Cannot accept a message: ${describeZodError(parsed.error)}`);
    return parsed.data;
  }
}

/**
 * Who the client is by its TLS certificate: its subject as named by its issuer (a renewed
 * certificate keeps the kept copies), or '' where the transport has none.
 */
function peerIdentity(call: BuildCall): string {
  try {
    const cert = call.getAuthContext?.()?.sslPeerCertificate;
    return cert?.subject ? JSON.stringify([cert.issuer ?? {}, cert.subject]) : '';
  } catch {
    return '';
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (!signal.aborted) return;
  throw signal.reason instanceof BuildError ? signal.reason : new BuildError('cancelled', 'Cannot continue: the build was cancelled');
}

function isSessionMessage(msg: ClientMessage): msg is SessionClientMessage {
  return (SESSION_MESSAGES as readonly string[]).includes(msg.msg);
}
