import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino, { type Logger } from 'pino';
import { BuildError } from '../solver/build-error';
import { execHostCommand } from './host-command';
import type { ActiveSnapshot, CommitOptions, SnapshotInfo, Snapshotter, SnapshotView } from './snapshotter';
import { MetaDb } from './meta-db';
import { loadSnapshots, mountsBelow } from './snapshot-records';
import { SnapshotTable } from './snapshot-table';
import { assertOverlayXattrsReadable, type OverlayXattrNamespace } from './trusted-xattr-probe';


/**
 * The kernel copies mount options into one page; stay under it with room for the other
 * options. Paths are relative to the snapshots dir (the mount runs with it as cwd), so one
 * layer costs 28 bytes (`<24 hex>/fs:`): about 140 layers fit, more than the overlay limit of
 * 500 lower layers would allow with absolute paths and more than images use (Docker caps at 127).
 */
const MAX_OPTIONS = 4000;

/** Options of `OverlaySnapshotter.open`. */
export interface OverlaySnapshotterOptions {
  /**
   * Where `open` reports what it had to delete because it was damaged (unreadable metadata,
   * a missing parent). Nothing is logged when absent.
   */
  logger?: Logger;
  /**
   * `user`: mount with `userxattr`, as a process in a user namespace must (buildd --rootless,
   * kernel 5.11 and later); overlay then keeps its markers in user.overlay.*. Default `trusted`.
   * `open` fails with `failed-precondition` when a test mount (see probeOverlay) is refused.
   */
  overlayXattrs?: OverlayXattrNamespace;
  /**
   * The daemon's metadata database, which holds the committed snapshots (the snapshots table);
   * default: the one at `<root>/meta.db` (MetaDb.open shares a connection per file).
   */
  meta?: MetaDb;
}

/**
 * Snapshotter on overlayfs under `<root>/snapshots`: each snapshot is `<id>/fs` (its upper
 * layer), `<id>/work` (overlay's work dir while active), `<id>/merged` (mount point while
 * mounted); its record is a row of the metadata database, written once its files are synced.
 * `empty/` is the lower layer of a snapshot with no parent and `views/` holds read-only mount points.
 */
export class OverlaySnapshotter implements Snapshotter {
  readonly kind = 'overlayfs' as const;
  private readonly metas = new Map<string, SnapshotInfo>();
  /** merged dir of mounted active snapshots, by id (a promise, so concurrent mounts share one) */
  private readonly mounts = new Map<string, Promise<string>>();
  private readonly viewCounts = new Map<string, number>();
  private indexOff = false;

  /** the database handle open() made (no `meta` given), closed by close() */
  private ownMeta: MetaDb | undefined;

  private constructor(
    private readonly dir: string,
    private readonly table: SnapshotTable,
    private readonly log: Logger,
    readonly overlayXattrs: OverlayXattrNamespace,
  ) {}

  /**
   * Opens (creating) the store, unmounting stale mounts and dropping snapshots a crash left
   * active. A snapshot whose record is damaged or whose directory is gone, and every snapshot
   * layered on it, is deleted with a warning (see loadSnapshots): nothing can mount it again,
   * and the build cache treats it as a miss, so builds stay correct and only rebuild (or pull
   * again) what was lost.
   */
  static async open(root: string, opts: OverlaySnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    // a handle of its own when none is given, closed by close() (or here, when the open fails)
    const own = opts.meta === undefined ? MetaDb.open(root) : undefined;
    const table = new SnapshotTable(opts.meta ?? (own as MetaDb), 'overlayfs');
    const s = new OverlaySnapshotter(path.join(path.resolve(root), 'snapshots'), table, opts.logger ?? pino({ enabled: false }), opts.overlayXattrs ?? 'trusted');
    s.ownMeta = own;
    try {
      await fsp.mkdir(path.join(s.dir, 'empty'), { recursive: true });
      await s.unmountStale();
      await fsp.rm(path.join(s.dir, 'views'), { recursive: true, force: true });
      await fsp.mkdir(path.join(s.dir, 'views'));
      await s.load();
      s.indexOff = await indexOffSupported();
      // A refused mount would otherwise only show at the first build.
      await probeOverlay(path.join(s.dir, 'views'), s.overlayXattrs);
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
    await fsp.mkdir(path.join(sdir, 'fs'), { recursive: true });
    await fsp.mkdir(path.join(sdir, 'work'));
    // only in memory until committed: after a crash its dir has no row, and open() removes it
    const info: SnapshotInfo = { id, parent, kind: 'active', createdAt: new Date().toISOString() };
    this.metas.set(id, info);
    return {
      id,
      parent,
      mount: () => this.mountActive(id),
      upperDir: async () => {
        if (this.mounts.has(id)) throw new BuildError('internal', `Cannot write snapshot ${id} below its mount: it is mounted`);
        return path.join(sdir, 'fs');
      },
      release: async () => {
        if (this.metas.get(id)?.kind === 'active') await this.remove(id);
      },
    };
  }

  async commit(active: ActiveSnapshot, opts: CommitOptions = {}): Promise<string> {
    const info = this.metas.get(active.id);
    if (!info || info.kind !== 'active') throw new BuildError('failed-precondition', `Cannot commit snapshot ${active.id}: it is not an active snapshot`);
    await this.unmountActive(active.id);
    const sdir = path.join(this.dir, active.id);
    await fsp.rm(path.join(sdir, 'work'), { recursive: true, force: true });
    // The layer's files must be on disk before the metadata says the snapshot exists.
    await execHostCommand('sync', ['-f', path.join(sdir, 'fs')]);
    const done: SnapshotInfo = { ...info, kind: 'committed', ...(opts.createdAt ? { createdAt: opts.createdAt } : {}), ...(opts.linkedFrom?.length ? { linkedFrom: [...opts.linkedFrom] } : {}) };
    this.table.commit(done, opts.within);
    this.metas.set(active.id, done);
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
    if (!this.metas.has(id)) throw new BuildError('not-found', `Cannot find snapshot ${id}: not in the snapshotter`);
    return path.join(this.dir, id, 'fs');
  }

  async chain(id: string): Promise<string[]> {
    this.committed(id, 'walk the chain of');
    return this.chainOf(id);
  }

  async remove(id: string): Promise<void> {
    const info = this.metas.get(id);
    if (!info) return;
    if (info.kind === 'committed') {
      const child = [...this.metas.values()].find((m) => m.parent === id);
      if (child) throw new BuildError('failed-precondition', `Cannot remove snapshot ${id}: snapshot ${child.id} is layered on it`);
      if ((this.viewCounts.get(id) ?? 0) > 0) throw new BuildError('failed-precondition', `Cannot remove snapshot ${id}: a view of it is mounted`);
      this.table.delete(id);
    } else {
      await this.unmountActive(id);
    }
    this.metas.delete(id);
    // a crash before this ends leaves a dir without a row: open() removes it
    await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  detach(id: string): (() => Promise<void>) | undefined {
    const info = this.metas.get(id);
    if (info?.kind !== 'committed' || this.viewed(id) || [...this.metas.values()].some((m) => m.parent === id)) return undefined;
    this.table.delete(id);
    this.metas.delete(id);
    return () => fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  async mountView(id: string): Promise<SnapshotView> {
    this.committed(id, 'mount a view of');
    const lowers = this.chainOf(id).reverse().map((l) => `${l}/fs`);
    // At least two lower layers: older kernels refuse a read-only overlay with one.
    lowers.push('empty');
    const target = path.join(this.dir, 'views', randomBytes(8).toString('hex'));
    await fsp.mkdir(target);
    this.viewCounts.set(id, (this.viewCounts.get(id) ?? 0) + 1);
    try {
      await this.mountOverlay(id, `lowerdir=${lowers.join(':')}`, target, true);
    } catch (err) {
      this.viewCounts.set(id, (this.viewCounts.get(id) ?? 1) - 1);
      await fsp.rmdir(target).catch(() => undefined);
      throw err;
    }
    let released = false;
    return {
      path: target,
      release: async () => {
        if (released) return;
        released = true;
        await unmount(target);
        await fsp.rmdir(target);
        this.viewCounts.set(id, (this.viewCounts.get(id) ?? 1) - 1);
      },
    };
  }

  private committed(id: string, action: string): SnapshotInfo {
    const info = this.metas.get(id);
    if (!info) throw new BuildError('not-found', `Cannot ${action} snapshot ${id}: not in the snapshotter`);
    if (info.kind !== 'committed') throw new BuildError('failed-precondition', `Cannot ${action} snapshot ${id}: it is not committed`);
    return info;
  }

  /** Base first. Parents are always committed and present (enforced by prepare, remove and load). */
  private chainOf(id: string): string[] {
    const out: string[] = [];
    for (let cur: string | undefined = id; cur !== undefined; cur = this.metas.get(cur)?.parent) out.push(cur);
    return out.reverse();
  }

  private mountActive(id: string): Promise<string> {
    const existing = this.mounts.get(id);
    if (existing) return existing;
    const info = this.metas.get(id);
    if (!info || info.kind !== 'active') return Promise.reject(new BuildError('failed-precondition', `Cannot mount snapshot ${id}: it is not active`));
    const merged = path.join(this.dir, id, 'merged');
    const lowers = info.parent === undefined ? ['empty'] : this.chainOf(info.parent).reverse().map((l) => `${l}/fs`);
    const p = (async () => {
      await fsp.mkdir(merged, { recursive: true });
      await this.mountOverlay(id, `lowerdir=${lowers.join(':')},upperdir=${id}/fs,workdir=${id}/work`, merged, false);
      return merged;
    })();
    this.mounts.set(id, p);
    p.catch(() => this.mounts.delete(id));
    return p;
  }

  private async unmountActive(id: string): Promise<void> {
    const p = this.mounts.get(id);
    if (!p) return;
    this.mounts.delete(id);
    const merged = await p.catch(() => undefined);
    if (merged !== undefined) await unmount(merged);
  }

  private async mountOverlay(id: string, layers: string, target: string, readonly: boolean): Promise<void> {
    const options = [layers, ...(this.overlayXattrs === 'user' ? ['userxattr'] : []), ...(this.indexOff ? ['index=off'] : []), ...(readonly ? ['ro'] : [])].join(',');
    if (options.length > MAX_OPTIONS) {
      throw new BuildError('internal', `Cannot mount snapshot ${id}: its ${layers.split(':').length} layers need mount options longer than ${MAX_OPTIONS} bytes`);
    }
    try {
      // Relative layer paths resolve against the cwd of the mount process: the snapshots dir.
      await execHostCommand('mount', ['-t', 'overlay', 'overlay', '-o', options, target], { cwd: this.dir });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? String(err);
      throw new BuildError('internal', `Cannot mount snapshot ${id}: ${stderr.trim()}`, { cause: err });
    }
  }

  private async load(): Promise<void> {
    const metas = await loadSnapshots(this.dir, this.table, {
      skip: ['empty', 'views'],
      log: this.log,
      onCommitted: (sdir) => fsp.rm(path.join(sdir, 'merged'), { recursive: true, force: true }),
    });
    for (const [id, info] of metas) this.metas.set(id, info);
  }

  private async unmountStale(): Promise<void> {
    for (const p of await mountsBelow(this.dir)) await unmount(p);
  }
}

/** index=on ties an upper dir to its lowers by file handle; our lowers are shared and reused. */
function indexOffSupported(): Promise<boolean> {
  return fsp.access('/sys/module/overlay/parameters/index').then(() => true, () => false);
}

/**
 * Proves that this process may mount overlay with an upper dir under `scratchParent` (an
 * existing directory of buildd's root), with the options the snapshotter would use, and that
 * the file system keeps the attributes overlay's markers need (overlay itself mounts without
 * them, on ramfs say, and would then lose opaque directories): writes one, then mounts and
 * unmounts a throwaway overlay in a scratch directory, removed afterwards. Fails with
 * `failed-precondition` saying why (the kernel refusing overlay's upper dir on overlayfs, NFS
 * or FUSE; no user.* attributes; no overlay in this user namespace).
 */
export async function probeOverlay(scratchParent: string, namespace: OverlayXattrNamespace): Promise<void> {
  const dir = path.join(scratchParent, `overlay-probe-${randomBytes(6).toString('hex')}`);
  const what =
    namespace === 'user'
      ? 'in this user namespace (mount option userxattr needs Linux 5.11 or later and a file system that keeps user.* attributes)'
      : `under ${scratchParent}`;
  try {
    for (const d of ['lower', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(dir, d), { recursive: true });
    await assertOverlayXattrsReadable(dir, namespace, 'overlay opaque markers');
    const options = [`lowerdir=lower,upperdir=upper,workdir=work`, ...(namespace === 'user' ? ['userxattr'] : []), ...((await indexOffSupported()) ? ['index=off'] : [])];
    try {
      await execHostCommand('mount', ['-t', 'overlay', 'overlay', '-o', options.join(','), 'merged'], { cwd: dir });
    } catch (err) {
      // mount(8) says `mount: <target>: <why>` and then points at dmesg: the why is the news
      const first = ((err as { stderr?: string }).stderr ?? String(err)).trim().split('\n')[0] ?? '';
      const why = first.replace(/^mount: .*?: /, '').replace(/\.$/, '');
      throw new Error(`a test mount was refused (${why})${await fsTypeNote(scratchParent)}`);
    }
    await unmount(path.join(dir, 'merged'));
  } catch (err) {
    throw new BuildError('failed-precondition', `Cannot use overlayfs ${what}: ${(err as Error).message}`, { cause: err });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** `; <dir> is on <fstype>` from mountinfo: the usual reason overlay refuses an upper dir. */
async function fsTypeNote(dir: string): Promise<string> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  let best: { point: string; type: string } | undefined;
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    const point = fields[4]?.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    const type = sep > 0 ? fields[sep + 1] : undefined;
    if (point === undefined || type === undefined) continue;
    if ((dir === point || dir.startsWith(point === '/' ? '/' : point + '/')) && (!best || point.length >= best.point.length)) best = { point, type };
  }
  if (!best) return '';
  // the kernel takes no upper dir on a file system that revalidates its names (overlay, NFS, FUSE...)
  const refused = /^(overlay|nfs4?|fuse(\..*)?|9p|cifs|smb3|ceph|virtiofs)$/.test(best.type);
  return `; ${dir} is on ${best.type}${refused ? ', which overlayfs does not take as an upper dir' : ''}`;
}

/** Unmounts, falling back to a lazy unmount when something still holds the mount busy. */
export async function unmount(target: string): Promise<void> {
  try {
    await execHostCommand('umount', [target]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    if (/not mounted|no mount point/i.test(stderr)) return;
    try {
      await execHostCommand('umount', ['-l', target]);
    } catch (err2) {
      const stderr2 = (err2 as { stderr?: string }).stderr ?? String(err2);
      throw new BuildError('internal', `Cannot unmount ${target}: ${stderr2.trim()}`, { cause: err2 });
    }
  }
}
