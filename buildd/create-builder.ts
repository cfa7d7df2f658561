import { platformId } from '../store/platforms';
import { detectWorkerPlatforms } from './worker/worker-platforms';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { CacheStore } from '../solver/cache-store';
import { MetaDb } from '../store/meta-db';
import type { Snapshotter } from '../store/snapshotter';
import { importJsonRecords } from './meta-json-import';
import { Solver } from '../solver/solver';
import { CacheLoader } from './cache-io/cache-loader';
import { LocalContentStore } from '../store/content-store';
import { ImageStore } from '../store/image-store';
import { loadDockerCredentials } from '../store/docker-credentials';
import { RegistryClient } from '../store/registry-client';
import { Builder } from './builder';
import { DaemonConfig } from './config';
import type { DaemonMetrics } from './ops/daemon-metrics';
import { defaultMaxParallelism } from './ops/worker-record';
import { EmbeddedRegistry } from './registry/embedded-registry';
import { DockerfileBuilder } from './dockerfile-builder';
import { BuildWorker } from './worker/build-worker';
import { ImagePuller } from './worker/image-puller';
import { SessionRegistries } from './session/session-registries';
import { LayerIndex } from '../store/layer-index';
import { RuncExecutor } from './worker/runc-executor';
import { openCniSandboxes } from './worker/network/open-cni-sandboxes';
import { openSnapshotter } from './worker/open-snapshotter';
import { CacheMounts } from './worker/mounts/cache-mounts';
import { NetworkedExecutor } from './worker/network/networked-executor';
import { ROOTLESS_NETWORK_OFF, ROOTLESS_NETWORK_ON } from './rootless/rootless-start';
import { openSlirpUplink } from './rootless/slirp-uplink';
import { rootlessStepCgroups } from './worker/cgroups/rootless-cgroup-parent';
import { sweepLeftCgroups } from './worker/cgroups/step-cgroup-sweep';
import { checkProcessMode } from './worker/check-process-mode';

/** Options of the daemon's one builder. */
export interface CreateBuilderOptions {
  root: string;
  logger: Logger;
  config: DaemonConfig;
  /** where pulled and pushed blob bytes are counted */
  metrics?: DaemonMetrics;
}

/**
 * Opens the stores under `root` and wires frontend, solver, worker and exporters into the
 * daemon's Builder. Lifecycle: once per daemon; its `close` kills any container still running
 * and releases the registry connections.
 */
export async function createBuilder(opts: CreateBuilderOptions): Promise<Builder> {
  const root = path.resolve(opts.root);
  await fsp.mkdir(root, { recursive: true, mode: 0o711 });
  // Contexts uploaded for builds a killed daemon never finished: nobody will read them again.
  await fsp.rm(path.join(root, 'sessions'), { recursive: true, force: true });
  const tmpDir = path.join(root, 'tmp');
  await fsp.rm(tmpDir, { recursive: true, force: true });
  await fsp.mkdir(tmpDir, { recursive: true });
  // rootless: steps get cgroups only under a parent delegated to the user, probed here
  const stepCgroups = opts.config.rootless ? await rootlessStepCgroups(opts.config) : undefined;
  const processMode = await checkProcessMode(opts.config, opts.logger);
  // Containers a killed daemon left still use their rootfs mounts: delete them before the
  // snapshotter unmounts what it finds.
  const runc = new RuncExecutor({
    rootless: opts.config.rootless,
    cgroupParent: opts.config.rootless ? stepCgroups?.parent : opts.config.cgroupParent,
    runcRoot: path.join(root, 'runc'),
    stateDir: path.join(root, 'bundles'),
    logger: opts.logger,
    stepLimits: opts.config.stepLimits,
    processMode,
  });
  const swept = await runc.sweep();
  if (swept.length > 0) opts.logger.warn({ containers: swept }, 'deleted containers left by a previous daemon');
  // runc delete removed the cgroups of the containers it knew; these are of steps it never saved
  if (stepCgroups) await sweepLeftCgroups(stepCgroups.dirs, opts.logger);
  // after the containers: a namespace is only torn down once nothing runs in it
  // Rootless: the CNI bridge lives in a namespace of buildd's own, slirp4netns its way out;
  // when that cannot be had, the runc executor alone gives a 'sandbox' step loopback only.
  const uplink = opts.config.rootless ? await openSlirpUplink(path.join(root, 'net')) : undefined;
  if (uplink && 'off' in uplink) opts.logger.warn(`${ROOTLESS_NETWORK_OFF}: ${uplink.off}`);
  if (uplink && 'uplink' in uplink) opts.logger.info(ROOTLESS_NETWORK_ON);
  const sandboxes =
    uplink && 'off' in uplink
      ? undefined
      : await openCniSandboxes({
          stateDir: path.join(root, 'net'),
          cniConfigPath: opts.config.cniConfigPath,
          cniBinaryDir: opts.config.cniBinaryDir,
          poolSize: opts.config.cniPoolSize,
          uplink: uplink?.uplink,
          logger: opts.logger,
        }).catch(async (err: unknown) => {
          await uplink?.uplink.close();
          throw err;
        });
  const sweptNets = (await sandboxes?.sweep()) ?? [];
  if (sweptNets.length > 0) opts.logger.warn({ sandboxes: sweptNets }, 'released network namespaces left by a previous daemon');
  const executor = sandboxes ? new NetworkedExecutor(runc, sandboxes) : runc;
  // one database for every record that refers to a blob or a snapshot (see MetaDb)
  const meta = MetaDb.open(root);
  let snapshotter: Snapshotter;
  let content: LocalContentStore;
  try {
    await importJsonRecords(meta, root, opts.logger);
    content = await LocalContentStore.open(path.join(root, 'content'), { meta });
    // in a user namespace overlay keeps its markers in user.overlay.* (mount option userxattr)
    snapshotter = await openSnapshotter({ root, requested: opts.config.snapshotter, logger: opts.logger, overlayXattrs: opts.config.rootless ? 'user' : 'trusted', meta });
  } catch (err) {
    meta.close();
    throw err;
  }
  const cache = CacheStore.on(meta);
  const layers = LayerIndex.on(meta);
  const images = ImageStore.on(meta);
  // checked now (a malformed config.json stops the start), then re-read whenever it changes
  const credentials = await loadDockerCredentials();
  const registries = new SessionRegistries(new RegistryClient({ registries: opts.config.registry, credentials, onBlobBytes: (direction, bytes) => opts.metrics?.blobTransferred(direction, bytes) }), credentials);
  const puller = new ImagePuller({ registries, content, snapshotter, cache, layers, maxLayerBytes: opts.config.maxLayerBytes });
  // cache mounts outlive builds and restarts: beside the other stores, not under tmp/
  const cacheMounts = await CacheMounts.open(path.join(root, 'cache-mounts'), { logger: opts.logger });
  // the kept copies of keyed locals (BuildService's LocalsStore, <root>/locals) never change once made
  const worker = new BuildWorker({ snapshotter, executor, puller, tmpDir, content, cacheMounts, immutableLocalsDir: path.join(root, 'locals') });
  const solver = new Solver(worker, cache, { maxParallelism: opts.config.maxParallelism ?? defaultMaxParallelism(), log: opts.logger });
  // last: once the builder exists, its close() tears the pool down
  sandboxes?.fill();
  const embedded = opts.config.registryAddr === undefined ? undefined : await EmbeddedRegistry.open(path.join(root, 'registry'), content, meta);
  const cacheLoader = new CacheLoader({ content, snapshotter, cache, layers, maxLayerBytes: opts.config.maxLayerBytes });
  // the emulators registered now: one registered later is used after a restart
  const platforms = await detectWorkerPlatforms();
  opts.logger.info({ platforms: platforms.runnable.map((p) => platformId(p)) }, 'platforms the worker runs steps for');
  for (const e of platforms.emulated.filter((x) => !x.fixBinary)) {
    opts.logger.warn({ handler: e.name, platform: platformId(e.platform) }, 'a binfmt_misc emulator is registered without the F flag: steps cannot use it');
  }
  return new DockerfileBuilder({ solver, registries, content, snapshotter, layers, images, meta, cacheMounts, root, executor, cacheLoader, logger: opts.logger, insecureEntitlements: opts.config.insecureEntitlements, embedded, platforms });
}
