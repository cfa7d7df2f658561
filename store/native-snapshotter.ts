import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino, { type Logger } from 'pino';
import { BuildError } from '../solver/build-error';
import { execHostCommand } from './host-command';
import { type Baselines, recordBaselines, writeLayerDiff } from './native-diff';
import { unmount } from './overlay-snapshotter';
import { MetaDb } from './meta-db';
import { loadSnapshots, mountsBelow } from './snapshot-records';
import { SnapshotTable } from './snapshot-table';
import type { ActiveSnapshot, CommitOptions, SnapshotInfo, Snapshotter, SnapshotView } from './snapshotter';
import { cloneEntry } from './tree-clone';
import { assertOverlayXattrsReadable, type OverlayXattrNamespace } from './trusted-xattr-probe';

/** Options of `NativeSnapshotter.open`. */
export interface NativeSnapshotterOptions {
  /** where `open` reports what it deleted because it was damaged, and how views are made */
  logger?: Logger;
  /**
   * The namespace of the opaque markers in the diff dirs `upperDir` returns: `user` for
   * buildd --rootless (a user namespace cannot write trusted.*), default `trusted`, as the
   * overlay snapshotter's, so layer-diff reads both alike.
   */
  overlayXattrs?: OverlayXattrNamespace;
  /** files copied at once by `prepare` and `commit` (default: see cloneEntry) */
  concurrency?: number;
  /** the daemon's metadata database (see OverlaySnapshotterOptions.meta) */
  meta?: MetaDb;
}

/**
 * The copying snapshotter (containerd's and BuildKit's `native`), for where overlayfs cannot be
 * mounted: under `<root>/snapshots-native` each snapshot is `<id>/fs` (its full tree: a copy
 * of its parent's `fs` made by `prepare`, then written by the build), `<id>/diff` (what the
 * layer changed, in overlay's upper-dir format, written by `commit`; a snapshot without parent
 * is its own diff); its record is a row of the metadata database, written after `fs` and `diff` are synced.
 * `views/` holds read-only bind mounts of committed trees.
 *
 * An active snapshot's `mount()` is its `fs` directory: nothing is mounted. A committed
 * snapshot's `fs` is never written again; `mountView` guards that with a read-only bind mount.
 */
export class NativeSnapshotter implements Snapshotter {
  readonly kind = 'native' as const;
  private readonly metas = new Map<string, SnapshotInfo>();
  /** what each active snapshot's tree was right after its copy (in memory: an active snapshot dies with the daemon) */
  private readonly baselines = new Map<string, Baselines>();
  private readonly viewCounts = new Map<string, number>();
  /** why views are the directories themselves, once a read-only bind mount was refused */
  private plainViews: string | undefined;

  /** the database handle open() made (no `meta` given), closed by close() */
  private ownMeta: MetaDb | undefined;

  private constructor(
    private readonly dir: string,
    private readonly table: SnapshotTable,
    private readonly log: Logger,
    readonly overlayXattrs: OverlayXattrNamespace,
    private readonly concurrency: number | undefined,
  ) {}

  /**
   * Opens (creating) the store: unmounts views a killed daemon left, drops snapshots a crash
   * left active and those with damaged metadata (and all layered on them, with a warning).
   * Fails with `permission-denied` when the file system cannot keep the opaque markers.
   */
  static async open(root: string, opts: NativeSnapshotterOptions = {}): Promise<NativeSnapshotter> {
    // a handle of its own when none is given, closed by close() (or here, when the open fails)
    const own = opts.meta === undefined ? MetaDb.open(root) : undefined;
    const table = new SnapshotTable(opts.meta ?? (own as MetaDb), 'native');
    const s = new NativeSnapshotter(path.join(path.resolve(root), 'snapshots-native'), table, opts.logger ?? pino({ enabled: false }), opts.overlayXattrs ?? 'trusted', opts.concurrency);
    s.ownMeta = own;
    try {
      await fsp.mkdir(s.dir, { recursive: true });
      for (const p of await mountsBelow(s.dir)) await unmount(p);
      await fsp.rm(path.join(s.dir, 'views'), { recursive: true, force: true });
      await fsp.mkdir(path.join(s.dir, 'views'));
      for (const [id, info] of await loadSnapshots(s.dir, table, { skip: ['views'], log: s.log })) s.metas.set(id, info);
      // a layer with a recreated directory would otherwise fail only at its export
      await assertOverlayXattrsReadable(path.join(s.dir, 'views'), s.overlayXattrs, 'opaque markers of the native snapshotter');
    } catch (err) {
      own?.close();
      throw err;
    }
    return s;
  }

  /** Closes the database handle open() made when no `meta` was given (a test's, a tool's); idempotent. */
  close(): void {
    this.ownMeta?.close();
    this.ownMeta = undefined;
  }

  async prepare(parent: string | undefined, signal?: AbortSignal): Promise<ActiveSnapshot> {
    signal?.throwIfAborted();
    if (parent !== undefined) this.committed(parent, 'prepare a snapshot on');
    const id = randomBytes(12).toString('hex');
    const sdir = path.join(this.dir, id);
    await fsp.mkdir(sdir);
    // only in memory until committed: after a crash its dir has no row, and open() removes it
    const info: SnapshotInfo = { id, parent, kind: 'active', createdAt: new Date().toISOString() };
    this.metas.set(id, info);
    // the parent stays until this one is gone: remove() refuses a parent with children
    try {
      if (parent === undefined) {
        await fsp.mkdir(path.join(sdir, 'fs'), { mode: 0o755 });
      } else {
        await cloneEntry(path.join(this.dir, parent, 'fs'), path.join(sdir, 'fs'), { signal, concurrency: this.concurrency });
        const baselines = await recordBaselines(path.join(sdir, 'fs'), signal);
        await waitForNewerCtime(sdir, baselines);
        this.baselines.set(id, baselines);
      }
    } catch (err) {
      await this.remove(id);
      throw err;
    }
    return {
      id,
      parent,
      mount: () => this.mountActive(id),
      release: async () => {
        if (this.metas.get(id)?.kind === 'active') await this.remove(id);
      },
    };
  }

  async commit(active: ActiveSnapshot, opts: CommitOptions = {}): Promise<string> {
    const info = this.metas.get(active.id);
    if (!info || info.kind !== 'active') throw new BuildError('failed-precondition', `Cannot commit snapshot ${active.id}: it is not an active snapshot`);
    const sdir = path.join(this.dir, active.id);
    if (info.parent !== undefined) {
      const baselines = this.baselines.get(active.id);
      if (!baselines) throw new BuildError('internal', `Cannot commit snapshot ${active.id}: its baseline is gone`);
      const diff = path.join(sdir, 'diff');
      await fsp.rm(diff, { recursive: true, force: true });
      await fsp.mkdir(diff, { mode: 0o755 });
      await writeLayerDiff({
        lower: path.join(this.dir, info.parent, 'fs'),
        upper: path.join(sdir, 'fs'),
        baselines,
        out: diff,
        opaqueXattr: `${this.overlayXattrs}.overlay.opaque`,
      });
    }
    // The tree and the diff must be on disk before the metadata says the snapshot exists.
    await execHostCommand('sync', ['-f', sdir]);
    const done: SnapshotInfo = { ...info, kind: 'committed', ...(opts.createdAt ? { createdAt: opts.createdAt } : {}), ...(opts.linkedFrom?.length ? { linkedFrom: [...opts.linkedFrom] } : {}) };
    this.table.commit(done, opts.within);
    this.metas.set(active.id, done);
    this.baselines.delete(active.id);
    return active.id;
  }

  async get(id: string): Promise<SnapshotInfo | undefined> {
    const info = this.metas.get(id);
    return info && { ...info };
  }

  async list(): Promise<SnapshotInfo[]> {
    return [...this.metas.values()].filter((m) => m.kind === 'committed').map((m) => ({ ...m }));
  }

  viewed(id: string): boolean {
    return (this.viewCounts.get(id) ?? 0) > 0;
  }

  async upperDir(id: string): Promise<string> {
    const info = this.committed(id, 'read the changes of');
    return path.join(this.dir, id, info.parent === undefined ? 'fs' : 'diff');
  }

  async chain(id: string): Promise<string[]> {
    this.committed(id, 'walk the chain of');
    const out: string[] = [];
    for (let cur: string | undefined = id; cur !== undefined; cur = this.metas.get(cur)?.parent) out.push(cur);
    return out.reverse();
  }

  async remove(id: string): Promise<void> {
    const info = this.metas.get(id);
    if (!info) return;
    const child = [...this.metas.values()].find((m) => m.parent === id);
    if (info.kind === 'committed') {
      if (child) throw new BuildError('failed-precondition', `Cannot remove snapshot ${id}: snapshot ${child.id} is layered on it`);
      if ((this.viewCounts.get(id) ?? 0) > 0) throw new BuildError('failed-precondition', `Cannot remove snapshot ${id}: a view of it is mounted`);
      this.table.delete(id);
    }
    this.metas.delete(id);
    this.baselines.delete(id);
    // a crash before this ends leaves a dir without a row: open() removes it
    await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  detach(id: string): (() => Promise<void>) | undefined {
    const info = this.metas.get(id);
    if (info?.kind !== 'committed' || this.viewed(id) || [...this.metas.values()].some((m) => m.parent === id)) return undefined;
    this.table.delete(id);
    this.metas.delete(id);
    this.baselines.delete(id);
    return () => fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  /**
   * A read-only bind mount of the committed tree where this process may mount (root, or root of
   * rootlesskit's mount namespace); where it may not, the tree itself, which nothing writes: a
   * committed snapshot's `fs` is only ever read (the first such view logs why).
   */
  async mountView(id: string): Promise<SnapshotView> {
    this.committed(id, 'mount a view of');
    const fsDir = path.join(this.dir, id, 'fs');
    this.viewCounts.set(id, (this.viewCounts.get(id) ?? 0) + 1);
    const done = (): void => {
      this.viewCounts.set(id, (this.viewCounts.get(id) ?? 1) - 1);
    };
    if (this.plainViews !== undefined) return { path: fsDir, release: onceAsync(async () => done()) };
    const target = path.join(this.dir, 'views', randomBytes(8).toString('hex'));
    await fsp.mkdir(target);
    try {
      await execHostCommand('mount', ['--bind', fsDir, target]);
    } catch (err) {
      await fsp.rmdir(target).catch(() => undefined);
      this.plainViews = ((err as { stderr?: string }).stderr ?? String(err)).trim();
      this.log.info({ reason: this.plainViews }, 'native snapshotter: read-only views are the committed directories themselves (a bind mount was refused)');
      return { path: fsDir, release: onceAsync(async () => done()) };
    }
    try {
      await execHostCommand('mount', ['-o', 'remount,bind,ro', target]);
    } catch (err) {
      await unmount(target).catch(() => undefined);
      await fsp.rmdir(target).catch(() => undefined);
      done();
      const stderr = ((err as { stderr?: string }).stderr ?? String(err)).trim();
      throw new BuildError('internal', `Cannot make the view of snapshot ${id} read-only: ${stderr}`, { cause: err });
    }
    return {
      path: target,
      release: onceAsync(async () => {
        await unmount(target);
        await fsp.rmdir(target);
        done();
      }),
    };
  }

  private async mountActive(id: string): Promise<string> {
    const info = this.metas.get(id);
    if (!info || info.kind !== 'active') throw new BuildError('failed-precondition', `Cannot mount snapshot ${id}: it is not active`);
    return path.join(this.dir, id, 'fs');
  }

  private committed(id: string, action: string): SnapshotInfo {
    const info = this.metas.get(id);
    if (!info) throw new BuildError('not-found', `Cannot ${action} snapshot ${id}: not in the snapshotter`);
    if (info.kind !== 'committed') throw new BuildError('failed-precondition', `Cannot ${action} snapshot ${id}: it is not committed`);
    return info;
  }
}

/** Longest wait for the clock to pass the copy's last ctime: a coarse tick is a few ms. */
const CLOCK_WAIT_MS = 2000;

/**
 * Returns once a ctime set now is later than every ctime in `baselines`. Many kernels stamp
 * ctime from a coarse clock (one tick, 1-10 ms): a write in the same tick as the copy's own
 * last metadata write would leave the ctime as recorded and the change unseen. Touches a marker
 * beside the tree until its ctime has moved past them.
 */
async function waitForNewerCtime(sdir: string, baselines: Baselines): Promise<void> {
  let newest = 0n;
  for (const b of baselines.values()) if (b.ctime > newest) newest = b.ctime;
  const marker = path.join(sdir, 'clock');
  const deadline = Date.now() + CLOCK_WAIT_MS;
  try {
    for (;;) {
      await fsp.writeFile(marker, '');
      if ((await fsp.lstat(marker, { bigint: true })).ctimeNs > newest) return;
      if (Date.now() > deadline) throw new BuildError('internal', `Cannot prepare a snapshot: the clock did not pass the copy's ctimes within ${CLOCK_WAIT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } finally {
    await fsp.rm(marker, { force: true });
  }
}

function onceAsync(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}
