import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ContentStore } from '../../store/content-store';
import { diskUsage } from '../../store/disk-usage';
import type { MetaDb } from '../../store/meta-db';
import type { SnapshotInfo, Snapshotter } from '../../store/snapshotter';
import type { LocalsStore } from '../locals/locals-store';
import type { CacheMounts } from '../worker/mounts/cache-mounts';
import { planPrune, type PruneOptions } from './prune-plan';
import { matchesFilters, type RecordFilter } from './record-filter';
import { RecordQueries } from './record-queries';
import type { UsageRecord } from './usage-record';

/** What the cache manager works on: the daemon's stores (DockerfileBuilder exposes them). */
export interface CacheStorage {
  meta: MetaDb;
  snapshotter: Snapshotter;
  content: ContentStore;
  /** the directories behind RUN --mount=type=cache */
  cacheMounts?: CacheMounts;
  /** the daemon's root: a prune bounded by bytes that the whole file system's use already fits does nothing */
  root?: string;
}

/** When the oldest running build started (ms since the epoch), undefined when none runs. */
export type OldestBuild = () => number | undefined;

/** What a prune removed. */
export interface PruneResult {
  removed: UsageRecord[];
  /** bytes of blobs nothing refers to any more (removed snapshots' layers, downloads found cached) */
  blobBytes: number;
}

/**
 * `buildctl du` and `buildctl prune` over the daemon's cache: committed snapshots (with what
 * the cache records say of their use) and kept build contexts.
 *
 * What a running build holds is never removed. A build counts as holding every snapshot it
 * created or took from the cache since it started (CacheStore.take stamps the use), and every
 * snapshot those are layered on (a snapshot goes only once nothing is layered on it). The last
 * check and the snapshot's detach are one synchronous step (Snapshotter.detach), so a build
 * either finds the record first and is seen, or misses it. Then every blob goes that no image,
 * embedded registry or layer row refers to and that was written before the oldest running
 * build started (see sweepBlobs): blobs are listed by a query of the blobs table.
 *
 * Lifecycle: one per daemon (BuildService), prunes one at a time.
 */
export class CacheManager {
  private readonly queries: RecordQueries;
  private pruning: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly storage: CacheStorage,
    private readonly oldestBuild: OldestBuild,
    private readonly locals: () => Promise<LocalsStore | undefined>,
    private readonly log: Logger,
  ) {
    this.queries = new RecordQueries(storage.meta);
  }

  /** Bytes held in the content store and in measured snapshots (metrics; no disk walk). */
  storedBytes(): { content: number; snapshots: number } {
    return this.queries.storedBytes();
  }

  /** Every record (those `filters` pick), least recently used first. */
  async usage(filters: readonly RecordFilter[] = [], signal?: AbortSignal): Promise<UsageRecord[]> {
    const snapshots = await this.storage.snapshotter.list();
    const sizes = this.queries.sizes();
    for (const s of snapshots) {
      if (sizes.has(s.id)) continue;
      const size = await diskUsage(await this.storage.snapshotter.upperDir(s.id), signal);
      // measured once: a committed snapshot never changes
      if ((await this.storage.snapshotter.get(s.id)) !== undefined) this.queries.putSize(s.id, size);
      sizes.set(s.id, size);
    }
    const records = [...this.snapshotRecords(snapshots, sizes), ...(await this.localRecords()), ...(await this.cacheMountRecords(signal))];
    return records.filter((r) => matchesFilters(r, filters)).sort((a, b) => a.lastUsedAt - b.lastUsedAt || (a.id < b.id ? -1 : 1));
  }

  /** Removes what `opts` allows (see planPrune), calling `removed` for each record as it goes. */
  prune(opts: PruneOptions, removed?: (r: UsageRecord) => void, signal?: AbortSignal): Promise<PruneResult> {
    const run = this.pruning.then(() => this.pruneNow(opts, removed, signal));
    this.pruning = run.catch(() => undefined);
    return run;
  }

  /**
   * At daemon start, before any build: cache records and layer rows of snapshots that are gone,
   * committed snapshots nothing refers to (a step cancelled or killed between its commit and
   * its record), and blobs nothing refers to (a crashed pull's, an image name's old manifest).
   */
  async sweep(): Promise<{ records: number; snapshots: number; blobs: number }> {
    const snapshots = await this.storage.snapshotter.list();
    const records = this.queries.forgetMissing(new Set(snapshots.map((s) => s.id)));
    const used = this.queries.snapshotUse();
    const indexed = this.queries.indexedSnapshots();
    const keep = new Set<string>();
    const byId = new Map(snapshots.map((s) => [s.id, s]));
    for (const s of snapshots) {
      if (!used.has(s.id) && !indexed.has(s.id)) continue;
      // what a referred snapshot is layered on is kept with it
      for (let id: string | undefined = s.id; id !== undefined && !keep.has(id); id = byId.get(id)?.parent) keep.add(id);
    }
    let removedSnapshots = 0;
    for (let progress = true; progress; ) {
      progress = false;
      for (const s of await this.storage.snapshotter.list()) {
        if (keep.has(s.id)) continue;
        const remove = this.detach(s.id, () => this.storage.snapshotter.detach(s.id));
        if (remove === undefined) continue;
        await remove();
        removedSnapshots++;
        progress = true;
      }
    }
    const { count: blobs } = await this.sweepBlobs(Date.now());
    if (records + removedSnapshots + blobs > 0) this.log.info({ records, snapshots: removedSnapshots, blobs }, 'removed cache nothing refers to');
    return { records, snapshots: removedSnapshots, blobs };
  }

  private async pruneNow(opts: PruneOptions, removed: ((r: UsageRecord) => void) | undefined, signal: AbortSignal | undefined): Promise<PruneResult> {
    const result: PruneResult = { removed: [], blobBytes: 0 };
    // The cache is part of what the root's file system holds: when all of that fits the bound,
    // so does the cache, and nothing needs measuring (the automatic GC's usual case).
    if (opts.keepBytes !== undefined && this.storage.root !== undefined && (await usedBytes(this.storage.root)) <= opts.keepBytes) return result;
    const plan = planPrune(await this.usage([], signal), opts);
    for (const r of plan) {
      signal?.throwIfAborted();
      if (r.type === 'regular') {
        const remove = this.detach(r.id, () => this.detachIfUnused(r.id));
        if (remove === undefined) continue;
        await remove();
      } else if (r.type === 'exec.cachemount') {
        const [hash, n] = this.mountIds.get(r.id) ?? [];
        if (hash === undefined || n === undefined || !(await this.storage.cacheMounts?.remove(hash, n))) continue;
      } else if (r.type === 'source.local') {
        const store = await this.locals();
        const gone = (await store?.prune((k) => localId(k.key) === r.id)) ?? [];
        if (gone.length === 0) continue;
      }
      result.removed.push(r);
      removed?.(r);
    }
    signal?.throwIfAborted();
    const oldest = this.oldestBuild();
    result.blobBytes = (await this.sweepBlobs(Math.min(oldest ?? Infinity, Date.now() - BLOB_GRACE_MS))).bytes;
    this.log.info({ records: result.removed.length, bytes: result.removed.reduce((n, r) => n + r.size, 0) + result.blobBytes }, 'pruned the build cache');
    return result;
  }

  /**
   * Deletes every blob nothing refers to (see RecordQueries.blobRoots) that was last written
   * before `cutoffMs`: the layers of removed snapshots, a download an ADD made for its cache key
   * and then found cached, a crashed pull's. A blob written (or found present by an ingest)
   * since is one a running build or an upload may be about to refer to, and stays.
   */
  private async sweepBlobs(cutoffMs: number): Promise<{ count: number; bytes: number }> {
    const roots = await this.queries.blobRoots(this.storage.content);
    let count = 0;
    let bytes = 0;
    for (const b of await this.storage.content.list()) {
      if (roots.has(b.digest) || b.writtenAtMs >= cutoffMs) continue;
      // checked again as it goes: a build may have found it, or a row named it, since the list
      if (!(await this.storage.content.collect(b.digest, cutoffMs, () => this.queries.refersTo(b.digest)))) continue;
      count++;
      bytes += b.size;
    }
    return { count, bytes };
  }

  /**
   * Takes snapshot `id` out (`detach`: the snapshotter's detach, with any last check) and forgets
   * every row that refers to it, in one transaction: a lookup after it misses, and no record is
   * left naming a snapshot about to go. Undefined, and nothing changed, when it must stay.
   */
  private detach(id: string, detach: () => (() => Promise<void>) | undefined): (() => Promise<void>) | undefined {
    return this.storage.meta.transaction(() => {
      const remove = detach();
      if (remove !== undefined) this.queries.forgetSnapshot(id);
      return remove;
    });
  }

  /**
   * The last check and the detach, in one synchronous step: not used since the oldest running
   * build started (nor made since), then out of the snapshotter if nothing is layered on it.
   */
  private detachIfUnused(id: string): (() => Promise<void>) | undefined {
    const oldest = this.oldestBuild();
    if (oldest !== undefined) {
      const lastUsed = this.storage.meta.db.prepare('SELECT max(last_used_at) AS t FROM cache_records WHERE snapshot = ?').get(id) as { t: string | null };
      if (lastUsed.t !== null && Date.parse(lastUsed.t) >= oldest) return undefined;
    }
    return this.storage.snapshotter.detach(id);
  }

  private snapshotRecords(snapshots: readonly SnapshotInfo[], sizes: ReadonlyMap<string, number>): UsageRecord[] {
    const use = this.queries.snapshotUse();
    const oldest = this.oldestBuild();
    const byId = new Map(snapshots.map((s) => [s.id, s]));
    const parents = new Set(snapshots.flatMap((s) => (s.parent === undefined ? [] : [s.parent])));
    const held = new Set<string>();
    for (const s of snapshots) {
      const u = use.get(s.id);
      const touched = Math.max(Date.parse(s.createdAt), u === undefined ? 0 : Date.parse(u.lastUsedAt));
      if (!this.storage.snapshotter.viewed(s.id) && (oldest === undefined || touched < oldest)) continue;
      for (let id: string | undefined = s.id; id !== undefined && !held.has(id); id = byId.get(id)?.parent) held.add(id);
    }
    return snapshots.map((s) => {
      const u = use.get(s.id);
      const createdAt = Date.parse(s.createdAt);
      return {
        id: s.id,
        type: 'regular' as const,
        ...(s.parent === undefined ? {} : { parent: s.parent }),
        size: sizes.get(s.id) ?? 0,
        createdAt,
        lastUsedAt: u === undefined ? createdAt : Date.parse(u.lastUsedAt),
        usageCount: u?.useCount ?? 0,
        description: u?.description ?? (u === undefined ? 'no cache record (removed by the next prune or restart)' : ''),
        inUse: held.has(s.id),
        shared: parents.has(s.id),
        mutable: false,
      };
    });
  }

  /** Record id -> the cache mount instance it names (filled by usage()). */
  private readonly mountIds = new Map<string, [string, number]>();

  private async cacheMountRecords(signal: AbortSignal | undefined): Promise<UsageRecord[]> {
    const out: UsageRecord[] = [];
    for (const m of (await this.storage.cacheMounts?.list()) ?? []) {
      const id = `cachemount-${m.hash.slice(0, 16)}-${m.n}`;
      this.mountIds.set(id, [m.hash, m.n]);
      out.push({
        id,
        type: 'exec.cachemount',
        // mutable: measured each time
        size: await diskUsage(m.dir, signal),
        createdAt: m.lastUsedMs,
        lastUsedAt: m.lastUsedMs,
        usageCount: 0,
        description: `cache mount ${m.id}${m.n > 0 ? ` (instance ${m.n})` : ''}`,
        inUse: m.inUse,
        shared: false,
        mutable: true,
      });
    }
    return out;
  }

  private async localRecords(): Promise<UsageRecord[]> {
    const store = await this.locals().catch(() => undefined);
    return (store?.list() ?? []).map((k) => ({
      id: localId(k.key),
      type: 'source.local' as const,
      size: k.bytes,
      createdAt: k.lastUsed.getTime(),
      lastUsedAt: k.lastUsed.getTime(),
      usageCount: k.generation,
      description: `kept build context (${k.entries} entries)`,
      inUse: k.inUse,
      shared: false,
      mutable: false,
    }));
  }
}

/**
 * How long a blob no build holds is kept after it was written: an upload to the embedded
 * registry stores its blob and links it right after, outside any build.
 */
const BLOB_GRACE_MS = 60_000;

/** A kept context's record id: its key is a hash the client never sees, shortened as BuildKit shortens ids. */
function localId(key: string): string {
  return `local-${key.slice(0, 25)}`;
}

/** Bytes in use on the file system that holds `dir`. */
async function usedBytes(dir: string): Promise<number> {
  const st = await statfs(dir);
  return (st.blocks - st.bfree) * st.bsize;
}
