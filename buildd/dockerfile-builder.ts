import { promises as fsp } from 'node:fs';
import type { Logger } from 'pino';
import { BuildError } from '../solver/build-error';
import { sha256Digest } from '../solver/canonical-json';
import { loadDefinition, type DefinitionGraph } from '../solver/definition-graph';
import { mergeGraphs } from '../solver/merge-graphs';
import type { OpInput } from '../solver/op';
import type { CacheSource } from '../solver/cache-source';
import { resultChain } from '../solver/result-chain';
import { Solver, type SolvedStep } from '../solver/solver';
import { premeasureLayer } from '../store/layer-blob';
import type { CacheLoader } from './cache-io/cache-loader';
import { cacheExportSpecs, cacheImportSpecs, type CacheExportSpec } from './cache-io/cache-specs';
import { openImports, runExports } from './cache-io/build-cache-io';
import { inlineCache, type ImportedStep } from './cache-io/cache-export';
import { frontendCacheImports, frontendInlineCache } from './cache-io/frontend-cache-opts';
import { ImportedCache } from './cache-io/imported-cache';
import type { MadeLayers } from '../store/image-assembler';
import { ContentStore } from '../store/content-store';
import type { EmbeddedRegistry } from './registry/embedded-registry';
import { ImageStore } from '../store/image-store';
import { parsePlatform, parsePlatformList, platformDirName, platformId } from '../store/platforms';
import { resolveInRoot } from '../store/safe-path';
import { Snapshotter } from '../store/snapshotter';
import { dockerfileToGraph, type FrontendResult } from '../frontend/dockerfile-frontend';
import { parseForceNetworkMode } from '../frontend/run-network';
import { parseHostnameOpt } from '../frontend/run-hostname';
import { checkEntitlements, type Entitlement } from '../solver/entitlements';
import { grantEntitlements } from './grant-entitlements';
import { Builder, BuildRequest, BuildSession, ExporterResponse, type ExportSpec } from './builder';
import { frontendOptWarnings } from './frontend-opt-warnings';
import { exportImage, layerRequest } from './image-export';
import { exportFilesystem } from './filesystem-export';
import { outputAttrWarnings } from './output-attr-warnings';
import { sourceDateEpoch } from './source-date-epoch';
import { boolAttr } from './bool-attr';
import { Executor } from './worker/executor';
import { checkRunnable, type WorkerPlatforms } from './worker/worker-platforms';
import { LayerIndex } from '../store/layer-index';
import type { MetaDb } from '../store/meta-db';
import type { CacheStorage } from './gc/cache-manager';
import type { CacheMounts } from './worker/mounts/cache-mounts';
import type { SessionRegistries } from './session/session-registries';
import type { RegistryClient } from '../store/registry-client';

/** Everything a Dockerfile build uses; opened by createBuilder, shared by all builds. */
export interface DockerfileBuilderDeps {
  solver: Solver;
  /** the daemon's registry client, and each build's when its client forwards credentials */
  registries: SessionRegistries;
  content: ContentStore;
  snapshotter: Snapshotter;
  layers: LayerIndex;
  images: ImageStore;
  /** the metadata database the stores above are over: closed with the builder */
  meta?: MetaDb;
  /** the RUN cache mounts' directories (for du and prune) */
  cacheMounts?: CacheMounts;
  /** the daemon's root (for GC's bound check) */
  root?: string;
  executor: Executor;
  logger: Logger;
  /** what the daemon lets clients grant (--allow-insecure-entitlement); none when absent */
  insecureEntitlements?: readonly Entitlement[];
  /** the embedded registry when the daemon serves one: a push to its address publishes into it directly */
  embedded?: EmbeddedRegistry;
  /** unpacks what --import-cache loads (absent: a build with --import-cache fails) */
  cacheLoader?: CacheLoader;
  /** what the worker builds for (absent: linux/amd64 only, as tests' builders) */
  platforms?: WorkerPlatforms;
}

const MAX_DOCKERFILE_BYTES = 2 * 1024 * 1024;

/**
 * The `dockerfile.v0` frontend end to end: reads the Dockerfile the client sent, turns it into
 * a graph (resolving base images through the registry), solves it, and runs each `--output`.
 */
export class DockerfileBuilder implements Builder {
  constructor(private readonly deps: DockerfileBuilderDeps) {}

  get embeddedRegistry(): EmbeddedRegistry | undefined {
    return this.deps.embedded;
  }

  get platforms(): WorkerPlatforms {
    return this.deps.platforms ?? AMD64_ONLY;
  }

  get storage(): CacheStorage | undefined {
    const { meta, snapshotter, content, cacheMounts, root } = this.deps;
    return meta === undefined ? undefined : { meta, snapshotter, content, ...(cacheMounts ? { cacheMounts } : {}), ...(root ? { root } : {}) };
  }

  async build(req: BuildRequest, session: BuildSession): Promise<ExporterResponse> {
    if (req.frontend !== 'dockerfile.v0') {
      throw new BuildError('invalid-argument', `Cannot build: unknown frontend ${JSON.stringify(req.frontend)} (only dockerfile.v0)`);
    }
    // base images, pulls and pushes of this build use its client's credentials when it forwards them
    const registry = this.deps.registries.forSession(session.attachables);
    try {
      return await this.solveAndExport(req, session, registry);
    } finally {
      await this.deps.registries.release(session.attachables);
    }
  }

  private async solveAndExport(req: BuildRequest, session: BuildSession, registry: RegistryClient): Promise<ExporterResponse> {
    const attrs = req.frontendAttrs;
    // As BuildKit's solver: asking for an entitlement the daemon does not allow fails at once.
    const granted = grantEntitlements(req.entitlements, this.deps.insecureEntitlements ?? []);
    // Before any work: an option the user believes in but buildd ignores must not pass unseen.
    const optionWarnings = [...frontendOptWarnings(attrs), ...req.exports.flatMap((spec) => outputAttrWarnings(spec))];
    for (const message of optionWarnings) session.progress({ type: 'warning', message });
    const platforms = this.platforms;
    const buildPlatform = platformId(platforms.build);
    // --opt platform=A,B: one frontend run per target, solved together, exported as one index
    const targets = attrs.platform ? parsePlatformList(attrs.platform).map((p) => platformId(p)) : [];
    const multi = targets.length > 1;
    const filename = attrs.filename ?? 'Dockerfile';
    const dockerfile = await readDockerfile(req.locals.dockerfile ?? req.locals.context, filename);
    const buildArgs: Record<string, string> = {};
    const namedContexts: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) {
      if (k.startsWith('build-arg:')) buildArgs[k.slice('build-arg:'.length)] = v;
      if (k.startsWith('context:')) namedContexts[k.slice('context:'.length)] = v;
    }
    const frontends = await Promise.all((targets.length > 0 ? targets : [undefined]).map((platform) => dockerfileToGraph({
      dockerfile,
      filename,
      target: attrs.target || undefined,
      buildArgs,
      namedContexts,
      ...(platform !== undefined ? { platform } : {}),
      buildPlatform,
      multiPlatform: multi,
      noCache: req.noCache,
      forceNetworkMode: parseForceNetworkMode(attrs['force-network-mode']),
      hostname: parseHostnameOpt(attrs),
      contextName: 'context',
      signal: session.signal,
      resolveImage: async (ref, opts) => {
        const resolved = await registry.resolve(ref, opts.signal ?? session.signal, opts.platform === undefined ? platforms.build : parsePlatform(opts.platform));
        return { ref: resolved.ref, digest: resolved.digest, config: resolved.config };
      },
    })));
    const frontend = frontends[0] as FrontendResult;
    // a warning every target gives (most are of the Dockerfile, not the platform) is shown once
    const warned = new Set<string>();
    for (const w of frontends.flatMap((f) => f.warnings)) {
      const key = JSON.stringify(w);
      if (warned.has(key)) continue;
      warned.add(key);
      session.progress({ type: 'warning', message: w.message, range: w.range });
    }
    // SOURCE_DATE_EPOCH per output (the build arg, or the Dockerfile's global ARG default), checked before any step runs
    const epochs = req.exports.map((spec) => sourceDateEpoch(frontend.sourceDateEpoch, spec.attrs));
    req.exports.forEach((spec, i) => {
      if (spec.type !== 'tar' && spec.type !== 'local' && epochs[i] === undefined && boolAttr(spec.attrs, 'rewrite-timestamp', false)) {
        session.progress({ type: 'warning', message: `--output type=${spec.type}: rewrite-timestamp is set, but there is no SOURCE_DATE_EPOCH (--opt build-arg:SOURCE_DATE_EPOCH=SECONDS): file times are left as they are` });
      }
    });
    const graphs = frontends.map((f) => loadDefinition(f.definition));
    const graph = graphs.length === 1 ? (graphs[0] as DefinitionGraph) : mergeGraphs(graphs);
    // before anything runs: a step needing an entitlement the client did not grant fails the
    // build, and so does one for a platform the worker cannot run
    checkEntitlements(graph.vertices.values(), granted);
    checkRunnable(platforms, [...graph.vertices.values()].flatMap((v) => (v.op.kind === 'exec' ? [v.op.platform ?? 'linux/amd64'] : [])));
    const warn = (message: string): void => session.progress({ type: 'warning', message });
    const inlineArg = frontendInlineCache(attrs) && !(req.cacheExports ?? []).some((c) => c.type === 'inline');
    const cacheExports = cacheExportSpecs([...(req.cacheExports ?? []), ...(inlineArg ? [{ type: 'inline', attrs: {} }] : [])], warn);
    const cacheImports = cacheImportSpecs([...(req.cacheImports ?? []), ...frontendCacheImports(attrs)], warn);
    const { cacheLoader } = this.deps;
    if (cacheImports.length > 0 && cacheLoader === undefined) throw new BuildError('internal', 'Cannot import cache: this builder has no cache loader');
    const imports = cacheLoader && cacheImports.length > 0 ? await openImports({ ...this.deps, loader: cacheLoader, registry }, cacheImports, session) : undefined;
    try {
      const built = frontends.map((f, i) => ({ frontend: f, output: (graphs[i] as DefinitionGraph).result, ...(multi ? { platform: targets[i] as string } : {}) }));
      return await this.solveWithCaches(req, session, registry, graph, built, epochs, cacheExports, imports?.sources ?? []);
    } finally {
      await imports?.close();
    }
  }

  private async solveWithCaches(
    req: BuildRequest,
    session: BuildSession,
    registry: RegistryClient,
    graph: DefinitionGraph,
    /** one per target, in the order asked for; `platform` set in a multi-platform build */
    built: ReadonlyArray<{ frontend: FrontendResult; output: OpInput | null; platform?: string }>,
    epochs: Array<number | undefined>,
    cacheExports: CacheExportSpec[],
    imports: CacheSource[],
  ): Promise<ExporterResponse> {
    // what an --export-cache writes: every cacheable step with its result on disk
    const steps: SolvedStep[] = [];
    const importedSteps: ImportedStep[] = [];
    // a type=image output without push describes its layers by measure only: each layer of the
    // result is measured as soon as its step is committed, while later steps run
    const measureEarly = req.exports.some((spec, i) => layerRequest(spec, epochs[i]).lazy === true) ? new Set(built.flatMap((b) => [...resultChain({ vertices: graph.vertices, result: b.output })])) : undefined;
    const onResult = (step: SolvedStep): void => {
      if (cacheExports.length > 0) steps.push(step);
      if (measureEarly?.has(step.vertex) && step.result.kind === 'snapshot' && step.result.id !== null) premeasureLayer(this.deps, step.result.id, session.signal);
    };
    const results = await this.deps.solver.solveAll(graph, built.map((b) => b.output), {
      locals: req.locals,
      session: session.attachables,
      onEvent: (e) => session.progress(e),
      signal: session.signal,
      imports,
      ...(cacheExports.length > 0 || measureEarly ? { onResult } : {}),
      onImported: ({ key, source, description }) => {
        if (!(source instanceof ImportedCache)) return;
        const chain = source.chainOf(key);
        if (chain !== undefined) importedSteps.push({ key, description, chain, origin: source.origin });
      },
    });
    const ids = results.map((result) => {
      if (result.kind !== 'snapshot') throw new BuildError('invalid-argument', 'Cannot export: the build result is a local directory, not a filesystem');
      return result.id;
    });
    const multi = built.length > 1;
    const response: ExporterResponse = {};
    const inline = cacheExports.some((c) => c.type === 'inline') ? (made: MadeLayers) => inlineCache(this.deps.snapshotter, steps, importedSteps, made) : undefined;
    for (const [i, spec] of req.exports.entries()) {
      const vertex = sha256Digest(`export ${req.ref} ${spec.type} ${JSON.stringify(spec.attrs)}`);
      const name = exportName(spec.type);
      const started = Date.now();
      session.progress({ type: 'vertex', digest: vertex, name, started, cached: false });
      try {
        const exported = spec.type === 'tar' || spec.type === 'local'
          ? await exportFilesystem(this.deps.snapshotter, multi ? built.map((b, j) => ({ dir: platformDirName(parsePlatform(b.platform as string)), result: ids[j] ?? null })) : (ids[0] ?? null), session, epochs[i])
          : await exportImage({ ...this.deps, registry }, spec, built.map((b, j) => ({ result: ids[j] ?? null, image: b.frontend.image, baseHistory: b.frontend.baseHistory })), session, epochs[i], inline, multi);
        Object.assign(response, exported);
        session.progress({ type: 'vertex', digest: vertex, name, started, completed: Date.now(), cached: false });
      } catch (err) {
        session.progress({ type: 'vertex', digest: vertex, name, started, completed: Date.now(), cached: false, error: (err as Error).message });
        throw err;
      }
    }
    if (cacheExports.length > 0) await runExports({ ...this.deps, registry }, cacheExports, steps, importedSteps, ids, session);
    return response;
  }

  async close(): Promise<void> {
    await this.deps.executor.close();
    await this.deps.registries.daemon.close();
    this.deps.meta?.close();
  }
}

/** A builder without detected platforms (tests): linux/amd64, nothing emulated. */
const AMD64_ONLY: WorkerPlatforms = { build: { os: 'linux', architecture: 'amd64' }, runnable: [{ os: 'linux', architecture: 'amd64' }], emulated: [], dir: '' };

async function readDockerfile(dir: string | undefined, filename: string): Promise<string> {
  if (dir === undefined) throw new BuildError('invalid-argument', 'Cannot read Dockerfile: the client sent no --local dockerfile=DIR');
  const file = await resolveInRoot(dir, filename);
  let st;
  try {
    st = await fsp.stat(file);
  } catch {
    throw new BuildError('not-found', `Cannot read Dockerfile: ${filename} not found in the dockerfile directory`);
  }
  if (!st.isFile()) throw new BuildError('invalid-argument', `Cannot read Dockerfile: ${filename} is not a file`);
  if (st.size > MAX_DOCKERFILE_BYTES) throw new BuildError('invalid-argument', `Cannot read Dockerfile: ${filename} is over ${MAX_DOCKERFILE_BYTES} bytes`);
  return fsp.readFile(file, 'utf8');
}

/** The progress line of an export, as BuildKit names it. */
function exportName(type: ExportSpec['type']): string {
  switch (type) {
    case 'image':
      return 'exporting to image';
    case 'oci':
      return 'exporting to oci image format';
    case 'docker':
      return 'exporting to docker image format';
    case 'tar':
      return 'exporting to client tarball';
    case 'local':
      return 'exporting to client directory';
  }
}
