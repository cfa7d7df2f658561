import { promises as fsp } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Address } from './api/address';
import { loadControlApi } from './api/load-proto';
import { BuildService } from './build-service';
import { gcDelayMs, gcRules as resolveGcRules } from './gc/gc-policy';
import type { PruneOptions } from './gc/prune-plan';
import type { Builder } from './builder';
import type { DaemonConfig } from './config';
import { widenReceiveWindows } from './receive-window';
import { listen } from './listen';
import { ServingHealth } from './ops/serving-health';
import { DaemonMetrics } from './ops/daemon-metrics';
import { workerRecord } from './ops/worker-record';
import { DEFAULT_HISTORY_LIMITS } from './history/history-store';
import { startDebugServer, type DebugServer } from './ops/debug-server';
import { serverCredentials } from './server-credentials';
import { HtpasswdAuth } from './registry/htpasswd-auth';
import { startRegistryServer, type RegistryServer } from './registry/registry-server';
import { BuildError } from '../solver/build-error';

/** How long a graceful gRPC shutdown may take before open calls are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * A serving daemon. Lifecycle: `startDaemon` binds every address (or fails and releases what
 * it bound) and then reports SERVING on the health service; `stop()` reports NOT_SERVING,
 * refuses new builds, lets running ones finish for up to `config.shutdownGraceMs`, cancels the
 * rest, closes the builder, shuts the servers down and removes their unix sockets. `stop` is
 * idempotent.
 */
export interface RunningDaemon {
  /** the addresses served, tcp ports resolved */
  addresses: Address[];
  /** the embedded registry's `host:port` when served (config.registryAddr) */
  registry?: string;
  /** the health-only server's address when served (config.healthAddr), tcp port resolved */
  health?: Address;
  /** the debug server's `host:port` when served (config.debugAddr) */
  debug?: string;
  stop(): Promise<void>;
}

export async function startDaemon(config: DaemonConfig, builder: Builder, logger: Logger, metrics = new DaemonMetrics()): Promise<RunningDaemon> {
  await fsp.mkdir(config.root, { recursive: true, mode: 0o700 });
  const api = loadControlApi();
  const gc = await gcOf(config);
  const snapshotter = builder.storage?.snapshotter.kind;
  const worker = snapshotter && workerRecord({ rootless: config.rootless, noProcessSandbox: config.noProcessSandbox, snapshotter, gcPolicy: gc.rules, maxParallelism: config.maxParallelism, network: 'cni', ...(builder.platforms ? { platforms: builder.platforms.runnable } : {}) });
  const history = config.history && {
    maxEntries: config.history.maxEntries ?? DEFAULT_HISTORY_LIMITS.maxEntries,
    maxAgeMs: config.history.maxAge === undefined ? DEFAULT_HISTORY_LIMITS.maxAgeMs : config.history.maxAge * 1000,
    maxBytes: config.history.maxBytes ?? DEFAULT_HISTORY_LIMITS.maxBytes,
  };
  const service = new BuildService({ builder, root: config.root, logger, keptLocals: config.keptLocals, gcRules: gc.rules, gcDelayMs: gc.delayMs, metrics, worker, historyLimits: history });
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  server.addService(api.service, service.handlers());
  const health = new ServingHealth();
  health.addTo(server);
  const healthServer = config.healthAddr === undefined ? undefined : new grpc.Server();
  if (healthServer) health.addTo(healthServer);
  let healthAddress: Address | undefined;
  const tls = await serverCredentials(config.tls);
  const addresses: Address[] = [];

  let registry: RegistryServer | undefined;
  let debug: DebugServer | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      health.draining();
      await service.shutdown(config.shutdownGraceMs);
      await registry?.stop();
      await builder.close();
      await debug?.stop();
      // probes have nothing more to learn; their Watch streams would hold a graceful shutdown
      healthServer?.forceShutdown();
      await shutdownServer(server);
      for (const a of [...addresses, ...(healthAddress ? [healthAddress] : [])]) if (a.kind === 'unix') await fsp.rm(a.path, { force: true });
    })();
    return stopping;
  };

  try {
    // before the first build: what a killed daemon left that nothing refers to
    await service.cache?.sweep();
    service.gc?.request();
    for (const text of config.addr) addresses.push(await listen(server, text, { tls, config, logger }));
    if (!widenReceiveWindows(server)) logger.warn('grpc-js no longer shows its HTTP/2 listeners: contexts stream with 64 KiB receive windows');
    if (healthServer && config.healthAddr !== undefined) healthAddress = await listen(healthServer, config.healthAddr, { tls: undefined, config, logger, plain: true });
    if (config.registryAddr !== undefined) {
      if (!builder.embeddedRegistry) throw new BuildError('failed-precondition', 'Cannot serve the registry: this builder has no registry state');
      const htpasswd = config.registryHtpasswd === undefined ? undefined : await HtpasswdAuth.load(config.registryHtpasswd);
      registry = await startRegistryServer({
        addr: config.registryAddr,
        registry: builder.embeddedRegistry,
        logger,
        tls: config.registryTls,
        auth: htpasswd && { htpasswd, anonymousPull: config.registryAnonymousPull },
      });
    }
    if (config.debugAddr !== undefined) debug = await startDebugServer(config.debugAddr, metrics, logger);
  } catch (err) {
    await registry?.stop();
    await service.shutdown(0);
    server.forceShutdown();
    healthServer?.forceShutdown();
    for (const a of [...addresses, ...(healthAddress ? [healthAddress] : [])]) if (a.kind === 'unix') await fsp.rm(a.path, { force: true });
    throw err;
  }
  health.serving();
  return { addresses, registry: registry?.address, health: healthAddress, debug: debug?.address, stop };
}

function shutdownServer(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The automatic GC's rules and delay; a bad value in the config's `gc` stops the start naming it. */
async function gcOf(config: DaemonConfig): Promise<{ rules: PruneOptions[]; delayMs: number }> {
  try {
    return { rules: await resolveGcRules(config.gc, config.root), delayMs: gcDelayMs(config.gc) };
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot configure gc: ${(err as Error).message}`);
  }
}
