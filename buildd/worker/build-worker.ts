import { mkdtemp, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { canonicalJson, sha256Digest } from '../../solver/canonical-json';
import { digestOf, envDigests, type KeyParts } from '../../solver/key-parts';
import { Vertex } from '../../solver/definition-graph';
import { ExecOp, FileOp, Op } from '../../solver/op';
import { CacheKey, OpContext, OpResult, Worker } from '../../solver/worker';
import { checksumPaths, type ChecksumSelection } from '../../store/content-checksum';
import { TreeChecksumMemo } from '../../store/tree-checksum-memo';
import { defaultKeptListings, type KeptListings } from '../../store/kept-listings';
import { checksumOfListing } from '../../store/listing-checksum';
import { debuglog } from 'node:util';
import { ContentStore, LocalContentStore } from '../../store/content-store';
import { copyAction, mkdirAction, mkfileAction } from '../../store/fs-copy';
import type { CommitOptions, Snapshotter } from '../../store/snapshotter';
import { LinkedCopier } from './linked-copier';
import { Executor } from './executor';
import { GitSource } from './git-source';
import { HttpSource } from './http-source';
import { ImagePuller } from './image-puller';
import { prepareSessionMounts, type SessionMounts } from './mounts/session-mounts';
import { SecretsDir } from './mounts/secrets-dir';
import { RemoteSources } from './remote-sources';
import { CacheMounts } from './mounts/cache-mounts';
import { prepareStepMounts, StepMounts } from './mounts/step-mounts';
import { stepLogStream } from './step-log-stream';


/** NODE_DEBUG=buildd-checksum: as content-checksum.ts logs its walks */
const debugChecksum = debuglog('buildd-checksum');
/** What the worker runs ops with; all shared by every build of the daemon. */
export interface BuildWorkerDeps {
  snapshotter: Snapshotter;
  executor: Executor;
  puller: ImagePuller;
  /** where scratch directories for a step live (removed when the step ends) */
  tmpDir: string;
  /**
   * where ADD <url> stores what it downloads, deduplicated by digest (default: a store under
   * `tmpDir`, opened on first use, so it is only as old as this daemon)
   */
  content?: ContentStore;
  /** ADD <url> downloads (default: one over undici's global-free Agent, into `content`) */
  http?: HttpSource;
  /** ADD <git remote> checkouts (default: one on `snapshotter` and `tmpDir`) */
  git?: GitSource;
  /**
   * the persistent directories of RUN --mount=type=cache (default: opened on first use under
   * `tmpDir`, so only as old as this daemon; the daemon passes one under its root)
   */
  cacheMounts?: CacheMounts;
  /** where secret values and ssh sockets live while a step runs (default: a tmpfs dir under /dev/shm for this `tmpDir`) */
  secretsDir?: SecretsDir;
  /**
   * where the kept copies of keyed locals live (`<root>/locals`): trees there never change, so
   * a COPY's checksum of one is remembered (TreeChecksumMemo); absent: every checksum walks
   */
  immutableLocalsDir?: string;
  /** the kept trees' listings, for a checksum of a whole kept context without a walk (default: the process's) */
  keptListings?: KeptListings;
}

/**
 * Runs ops on this machine: image sources become snapshot chains, RUN becomes a runc
 * container on a fresh snapshot, COPY and WORKDIR are file actions on a fresh snapshot.
 * Every snapshot a step prepares is committed on success and released in every outcome.
 */
export class BuildWorker implements Worker {
  private readonly remote: RemoteSources;
  private cacheMounts: Promise<CacheMounts> | undefined;
  private readonly secretsDir: SecretsDir;
  private readonly checksums: TreeChecksumMemo | undefined;
  private readonly linkedCopier: LinkedCopier;

  constructor(private readonly deps: BuildWorkerDeps) {
    this.checksums = deps.immutableLocalsDir !== undefined ? new TreeChecksumMemo(deps.immutableLocalsDir) : undefined;
    this.linkedCopier = new LinkedCopier(deps.snapshotter, deps.tmpDir, deps.immutableLocalsDir);
    this.secretsDir = deps.secretsDir ?? SecretsDir.forDaemon(deps.tmpDir);
    // sweeps what a killed daemon with this root left; a failure is reported by the first secret step
    this.secretsDir.prepare().catch(() => undefined);
    this.remote = new RemoteSources(
      deps.http ?? new HttpSource(deps.snapshotter, deps.content ?? (() => LocalContentStore.open(path.join(deps.tmpDir, 'downloads')))),
      deps.git ?? new GitSource(deps.snapshotter, deps.tmpDir),
    );
  }

  async cacheKey(vertex: Vertex, inputs: Array<{ key: string; result?: OpResult }>, ctx: OpContext): Promise<CacheKey> {
    const op = vertex.op;
    if (op.kind === 'source') {
      const local = localName(op.identifier);
      if (local !== undefined) return { key: sha256Digest(`local ${local}`), cacheable: false };
      if (RemoteSources.handles(op.identifier)) return { key: await this.remote.cacheKey(vertex.digest, op, ctx.signal), cacheable: true };
      return { key: sha256Digest(canonicalJson(op)), cacheable: true };
    }
    // The op with its inputs' digests replaced by their cache keys: a step is the same step
    // when its inputs have the same content, however the graph that made them was written.
    const normalized: Record<string, unknown> = { ...op, inputs: inputs.map((i) => i.key) };
    const contents: NonNullable<KeyParts['contents']> = [];
    if (op.kind === 'file') {
      const checksums: Array<string | null> = [];
      for (const action of op.actions) {
        const src = action.type === 'copy' && action.src >= 0 ? inputs[action.src].result : undefined;
        // The key's op already holds a mkfile's data, and a copy's flags (chmod, exclude, parents, link, extract).
        if (action.type === 'copy' && src?.kind === 'local') {
          const selection = { exclude: action.exclude, parents: action.parents };
          const checksum = await this.checksum(src.dir, action.srcPaths, selection, ctx.signal);
          checksums.push(checksum);
          contents.push({ paths: action.srcPaths, checksum });
        } else checksums.push(null);
      }
      normalized.contentChecksums = checksums;
    }
    if (op.kind === 'exec') {
      // A bind's content is an input of the step (BuildKit: a mount's input is an op input,
      // its content checksum part of the key); a client directory's key does not say what it
      // holds, so the selected path's checksum does. A cache mount's content never counts.
      const checksums: Array<string | null> = [];
      for (const m of op.mounts) {
        const src = m.input >= 0 && (m.type ?? 'bind') === 'bind' && m.dest !== '/' ? inputs[m.input].result : undefined;
        const checksum = src?.kind === 'local' ? await this.checksum(src.dir, [selectorPattern(m.selector)], {}, ctx.signal) : null;
        checksums.push(checksum);
        if (checksum !== null) contents.push({ paths: [`${m.dest} (bind of ${selectorPattern(m.selector)})`], checksum });
      }
      if (checksums.some((c) => c !== null)) normalized.mountChecksums = checksums;
    }
    return { key: sha256Digest(canonicalJson(normalized)), cacheable: true, parts: keyParts(op, inputs, contents) };
  }

  /**
   * checksumPaths, remembered for a kept copy of a local (immutable, see TreeChecksumMemo); of
   * a whole kept copy whose listing the daemon holds, computed from the listing (no walk)
   */
  private checksum(dir: string, patterns: string[], selection: ChecksumSelection, signal: AbortSignal): Promise<string> {
    const compute = async (): Promise<string> => {
      const listing = (selection.exclude?.length ?? 0) === 0 && !selection.parents ? (this.deps.keptListings ?? defaultKeptListings).get(dir) : undefined;
      const fromListing = listing && checksumOfListing(listing.entries, listing.digests, patterns);
      if (fromListing === undefined) return checksumPaths(dir, patterns, signal, selection);
      debugChecksum('checksum of %s %j from its listing: %d entries, no walk', dir, patterns, listing?.entries.length);
      return fromListing;
    };
    return this.checksums ? this.checksums.checksum(dir, { patterns, exclude: selection.exclude, parents: selection.parents }, compute) : compute();
  }

  async run(vertex: Vertex, inputs: OpResult[], ctx: OpContext): Promise<OpResult> {
    const op: Op = vertex.op;
    switch (op.kind) {
      case 'source':
        if (RemoteSources.handles(op.identifier)) return { kind: 'snapshot', id: await this.remote.run(vertex.digest, op, ctx.signal) };
        return this.runSource(op.identifier, op.attrs, ctx);
      case 'exec':
        return this.runExec(op, inputs, ctx);
      case 'file':
        return this.runFile(op, inputs, ctx);
    }
  }

  async exists(result: OpResult): Promise<boolean> {
    if (result.kind !== 'snapshot' || result.id === null) return true;
    return (await this.deps.snapshotter.get(result.id))?.kind === 'committed';
  }

  private async runSource(identifier: string, attrs: Record<string, string>, ctx: OpContext): Promise<OpResult> {
    const local = localName(identifier);
    if (local !== undefined) {
      const dir = ctx.locals[local];
      if (dir === undefined) throw new BuildError('invalid-argument', `Cannot use local ${local}: the client sent no --local ${local}=DIR`);
      return { kind: 'local', name: local, dir };
    }
    if (!identifier.startsWith('docker-image://')) throw new BuildError('invalid-argument', `Cannot use source ${identifier}: unknown source type`);
    const digest = attrs.digest;
    if (!digest) throw new BuildError('invalid-argument', `Cannot use source ${identifier}: no resolved digest`);
    const id = await this.deps.puller.pull(identifier.slice('docker-image://'.length), digest, ctx.signal, ctx.session);
    return { kind: 'snapshot', id };
  }

  private async runExec(op: ExecOp, inputs: OpResult[], ctx: OpContext): Promise<OpResult> {
    const rootMount = op.mounts.find((m) => m.dest === '/');
    if (!rootMount) throw new BuildError('invalid-argument', 'Cannot run step: it has no root mount');
    const base = snapshotOf(rootMount.input < 0 ? undefined : inputs[rootMount.input], 'the root of a RUN');
    const active = await this.deps.snapshotter.prepare(base, ctx.signal);
    let mounts: StepMounts | undefined;
    let lent: SessionMounts | undefined;
    try {
      const rootfs = await active.mount();
      if (op.mounts.length > 1) {
        const deps = { snapshotter: this.deps.snapshotter, tmpDir: this.deps.tmpDir, cacheMounts: await this.openCacheMounts() };
        mounts = await prepareStepMounts(op, inputs, rootfs, deps, { signal: ctx.signal, step: op.meta.args.join(' ') });
      }
      lent = await prepareSessionMounts(op, ctx, this.secretsDir);
      const { exitCode } = await this.deps.executor.run({
        ...lent.request,
        mounts: mounts?.mounts,
        rootfs,
        args: op.meta.args,
        env: op.meta.env,
        cwd: op.meta.cwd,
        user: op.meta.user,
        hostname: op.meta.hostname,
        network: op.network,
        security: op.security ?? 'sandbox',
        stdout: stepLogStream(ctx.log, 1),
        stderr: stepLogStream(ctx.log, 2),
        signal: ctx.signal,
      });
      if (exitCode !== 0) {
        throw new BuildError('failed-precondition', `process "${op.meta.args.join(' ')}" did not complete successfully: exit code: ${exitCode}`, { exitCode });
      }
      return { kind: 'snapshot', id: await this.deps.snapshotter.commit(active, withRecord(ctx)) };
    } finally {
      // the container is gone: views, throwaway snapshots, cache leases and lent secrets can go too
      try {
        await lent?.release();
        await mounts?.release();
      } finally {
        await active.release();
      }
    }
  }

  private openCacheMounts(): Promise<CacheMounts> {
    this.cacheMounts ??= this.deps.cacheMounts ? Promise.resolve(this.deps.cacheMounts) : CacheMounts.open(path.join(this.deps.tmpDir, 'cache-mounts'));
    return this.cacheMounts;
  }

  private async runFile(op: FileOp, inputs: OpResult[], ctx: OpContext): Promise<OpResult> {
    const base = snapshotOf(op.base < 0 ? undefined : inputs[op.base], 'the base of a file operation');
    const active = await this.deps.snapshotter.prepare(base, ctx.signal);
    const releases: Array<() => Promise<void>> = [];
    try {
      const linkedFrom = await this.linkedCopier.copy(op, inputs, base, active, ctx.signal);
      if (linkedFrom !== undefined) return { kind: 'snapshot', id: await this.deps.snapshotter.commit(active, { linkedFrom, ...withRecord(ctx) }) };
      const destRoot = await active.mount();
      for (const action of op.actions) {
        ctx.signal.throwIfAborted();
        if (action.type === 'mkdir') {
          await mkdirAction(action, destRoot);
          continue;
        }
        if (action.type === 'mkfile') {
          await mkfileAction(action, destRoot);
          continue;
        }
        const src = action.src < 0 ? undefined : inputs[action.src];
        let srcRoot: string;
        if (src?.kind === 'local') srcRoot = src.dir;
        else if (src?.kind === 'snapshot' && src.id !== null) {
          const view = await this.deps.snapshotter.mountView(src.id);
          releases.push(view.release);
          srcRoot = view.path;
        } else {
          srcRoot = await mkdtemp(path.join(this.deps.tmpDir, 'scratch-'));
          releases.push(() => rm(srcRoot, { recursive: true, force: true }));
        }
        await copyAction(action, srcRoot, destRoot, { tmpDir: this.deps.tmpDir, signal: ctx.signal });
      }
      return { kind: 'snapshot', id: await this.deps.snapshotter.commit(active, withRecord(ctx)) };
    } finally {
      for (const release of releases.reverse()) await release();
      await active.release();
    }
  }
}

/**
 * A mount's selector as a checksumPaths pattern: relative to the directory's root, its glob
 * characters escaped, since the mount takes the path literally (`source=pages/[slug]`).
 */
function selectorPattern(selector: string | undefined): string {
  const rel = (selector ?? '/').replace(/^\/+/, '');
  return rel === '' ? '.' : rel.replace(/[*?[\\]/g, '\\$&');
}

function localName(identifier: string): string | undefined {
  return identifier.startsWith('local://') ? identifier.slice('local://'.length) : undefined;
}

function snapshotOf(result: OpResult | undefined, what: string): string | undefined {
  if (result === undefined) return undefined;
  if (result.kind !== 'snapshot') throw new BuildError('invalid-argument', `Cannot use local ${result.name} as ${what}`);
  return result.id ?? undefined;
}

/** What a non-source step's key is made of (see KeyParts): the parts a person can act on apart. */
function keyParts(op: Exclude<Op, { kind: 'source' }>, inputs: Array<{ key: string }>, contents: NonNullable<KeyParts['contents']>): KeyParts {
  const parts: KeyParts = { inputs: inputs.map((i) => i.key), rest: '' };
  if (contents.length > 0) parts.contents = contents;
  if (op.kind === 'exec') {
    const { env, args, ...meta } = op.meta;
    parts.env = envDigests(env ?? []);
    parts.command = digestOf(args);
    parts.rest = digestOf(canonicalJson({ ...op, inputs: [], meta }));
  } else {
    parts.rest = digestOf(canonicalJson({ ...op, inputs: [] }));
  }
  return parts;
}

/** The commit option that records the step's result with its snapshot (see OpContext.recordCommit). */
function withRecord(ctx: OpContext): CommitOptions {
  return ctx.recordCommit === undefined ? {} : { within: ctx.recordCommit };
}
