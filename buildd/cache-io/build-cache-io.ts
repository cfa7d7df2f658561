import { toBuildError } from '../../solver/build-error';
import { sha256Digest } from '../../solver/canonical-json';
import type { CacheSource } from '../../solver/cache-source';
import type { SolvedStep } from '../../solver/solver';
import type { ContentStore } from '../../store/content-store';
import { parseImageRef } from '../../store/image-ref';
import type { RegistryClient } from '../../store/registry-client';
import type { BuildSession } from '../builder';
import { exportCache, type CacheExportDeps, type ImportedStep, type RemoteBlob } from './cache-export';
import { mapBounded } from '../../store/map-bounded';
import type { CacheLoader } from './cache-loader';
import type { CacheExportSpec, CacheImportSpec } from './cache-specs';
import { ImportedCache } from './imported-cache';
import { openRegistryCache, pushCache } from './registry-cache';
import { exportLocalCache, openLocalCache } from './local-cache';
import { BuildError } from '../../solver/build-error';

/** What a build's cache export uses: the daemon's stores, the build's registry client. */
export interface BuildCacheDeps extends CacheExportDeps {
  content: ContentStore;
  /** the build's client (its forwarded credentials, or the daemon's) */
  registry: RegistryClient;
}

/**
 * Runs `work` with the registry client `spec` asks for: with registry.insecure=true, one that
 * skips TLS checks to the ref's registry, closed after (as an output's registry.insecure).
 */
async function withClient<T>(deps: BuildCacheDeps, spec: { ref: string; insecure: boolean }, work: (client: RegistryClient) => Promise<T>): Promise<T> {
  if (!spec.insecure) return work(deps.registry);
  const client = deps.registry.withInsecureRegistry(parseImageRef(spec.ref).registry);
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

/** Reports `work` as a step of the build's progress named `name`, as BuildKit shows cache import and export. */
async function asStep<T>(session: BuildSession, name: string, work: () => Promise<T>): Promise<T> {
  const digest = sha256Digest(`${name} ${Math.random()}`);
  const started = Date.now();
  session.progress({ type: 'vertex', digest, name, started, cached: false });
  try {
    const out = await work();
    session.progress({ type: 'vertex', digest, name, started, completed: Date.now(), cached: false });
    return out;
  } catch (err) {
    session.progress({ type: 'vertex', digest, name, started, completed: Date.now(), cached: false, error: toBuildError(err).message });
    throw err;
  }
}

/** The caches a build imports, and the registry clients their loads use (close after the build). */
export interface BuildImports {
  sources: CacheSource[];
  close(): Promise<void>;
}

/**
 * The caches a build imports, their indexes read now (layers only when a step's result is
 * read, so a registry.insecure client stays open until `close`). A cache that does not exist
 * yet, or cannot be read, is a warning: the build then runs without it, as a first build in CI
 * must.
 */
export async function openImports(deps: BuildCacheDeps & { loader: CacheLoader }, specs: readonly CacheImportSpec[], session: BuildSession): Promise<BuildImports> {
  const sources: CacheSource[] = [];
  const opened: RegistryClient[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(opened.map((c) => c.close()));
  };
  try {
    for (const spec of specs) {
      const what = spec.type === 'registry' ? spec.ref : `type=local (${spec.digest ?? `tag ${spec.tag}`})`;
      try {
        const indexes = await asStep(session, `importing cache manifest from ${what}`, async () => {
          if (spec.type === 'local') {
            if (session.clientCache === undefined) throw new BuildError('failed-precondition', 'Cannot import a local cache: this build has no client session');
            const local = await openLocalCache(session.clientCache, spec.entry, spec, deps.content, session.signal);
            return local === undefined ? undefined : [local];
          }
          const client = spec.insecure ? deps.registry.withInsecureRegistry(parseImageRef(spec.ref).registry) : deps.registry;
          if (client !== deps.registry) opened.push(client);
          return openRegistryCache(client, spec.ref, deps.content, session.signal);
        });
        if (indexes === undefined) session.progress({ type: 'warning', message: `--import-cache ${what}: not found; the build runs without it` });
        else for (const index of indexes) sources.push(new ImportedCache(index, deps.loader));
      } catch (err) {
        session.signal.throwIfAborted();
        session.progress({ type: 'warning', message: `--import-cache ${what}: ${toBuildError(err).message}; the build runs without it` });
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { sources, close };
}

/** Exports the build's cache to each --export-cache (after the outputs, as BuildKit does). */
export async function runExports(deps: BuildCacheDeps, specs: readonly CacheExportSpec[], steps: readonly SolvedStep[], imported: readonly ImportedStep[], results: ReadonlyArray<string | null>, session: BuildSession): Promise<void> {
  for (const spec of specs) {
    // an inline cache went into the image's config as it was exported
    if (spec.type === 'inline') continue;
    const what = spec.type === 'registry' ? `registry ${spec.ref}` : `client directory (--export-cache ${spec.entry + 1})`;
    try {
      await asStep(session, `exporting cache to ${what}`, async () => {
        const cache = await exportCache(deps, steps, imported, results, spec.mode, spec.request, session.signal);
        if (spec.type === 'local') {
          if (session.clientCache === undefined) throw new BuildError('failed-precondition', 'Cannot export a local cache: this build has no client session');
          return exportLocalCache(session.clientCache, { entry: spec.entry, tag: spec.tag, present: spec.present }, cache, deps.content, session.signal);
        }
        await fetchRemoteBlobs(deps.content, cache.remote, spec.ref, session.signal);
        await withClient(deps, spec, (client) => pushCache(client, spec.ref, cache, deps.content, session.signal));
      });
    } catch (err) {
      session.signal.throwIfAborted();
      if (!spec.ignoreError) throw toBuildError(err);
      session.progress({ type: 'warning', message: `--export-cache to ${what}: ${toBuildError(err).message} (ignore-error=true: the build succeeds)` });
    }
  }
}

/**
 * Downloads the blobs of imported records that the export names but the content store lacks,
 * unless the export goes to the repository they come from (the usual import-and-export of one
 * ref), which has them: a push only uploads what its registry is missing.
 */
async function fetchRemoteBlobs(content: ContentStore, remote: readonly RemoteBlob[], ref: string, signal: AbortSignal): Promise<void> {
  const to = parseImageRef(ref);
  const missing: RemoteBlob[] = [];
  for (const r of remote) {
    const from = r.origin.ref.startsWith('local:') ? undefined : parseImageRef(r.origin.ref);
    if (from !== undefined && from.registry === to.registry && from.repository === to.repository) continue;
    if ((await content.info(r.blob.digest)) === undefined) missing.push(r);
  }
  await mapBounded(missing, 4, (r) => r.origin.fetch(r.blob, signal));
}
