import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import pino, { type Logger } from 'pino';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import type { ActiveSnapshot, SnapshotInfo, Snapshotter, SnapshotView } from './snapshotter';
import { assertOverlayXattrsReadable, type OverlayXattrNamespace } from './trusted-xattr-probe';

const execFileP = promisify(execFile);

const metaSchema = z.object({
  id: z.string().regex(/^[a-f0-9]{24}$/),
  parent: z.string().regex(/^[a-f0-9]{24}$/).optional(),
  kind: z.enum(['active', 'committed']),
  createdAt: z.string(),
}).strict();

/**
 * The kernel copies mount options into one page; stay under it with room for the other
 * options. Paths are relative to the snapshots dir (the mount runs with it as cwd), so one
 * layer costs 28 bytes (`<24 hex>/fs:`): about 140 layers fit, more than the overlay limit of
 * 500 lower layers would allow with absolute paths and more than images use (Docker caps at 127).
 */
const MAX_OPTIONS = 4000;
const META = 'meta.json';

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
   * `open` fails with `failed-precondition` when a test mount in this namespace is refused.
   */
  overlayXattrs?: OverlayXattrNamespace;
}

/** What `readMeta` found in a snapshot's directory. */
type MetaRead = { kind: 'ok'; info: SnapshotInfo } | { kind: 'missing' } | { kind: 'damaged'; reason: string };

/**
 * Snapshotter on overlayfs under `<root>/snapshots`: each snapshot is `<id>/fs` (its upper
 * layer), `<id>/work` (overlay's work dir while active), `<id>/merged` (mount point while
 * mounted) and `<id>/meta.json` (written atomically). `empty/` is the lower layer of a snapshot
 * with no parent and `views/` holds read-only mount points.
 */
export class OverlaySnapshotter implements Snapshotter {
  private readonly metas = new Map<string, SnapshotInfo>();
  /** merged dir of mounted active snapshots, by id (a promise, so concurrent mounts share one) */
  private readonly mounts = new Map<string, Promise<string>>();
  private readonly viewCounts = new Map<string, number>();
  private indexOff = false;

  private constructor(
    private readonly dir: string,
    private readonly log: Logger,
    readonly overlayXattrs: OverlayXattrNamespace,
  ) {}

  /**
   * Opens (creating) the store, unmounting stale mounts and dropping snapshots a crash left
   * active. A snapshot whose metadata is damaged, and every snapshot layered on it, is deleted
   * with a warning: nothing can mount it again, and the build cache treats it as a miss, so
   * builds stay correct and only rebuild (or pull again) what was lost.
   */
  static async open(root: string, opts: OverlaySnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    const s = new OverlaySnapshotter(path.join(path.resolve(root), 'snapshots'), opts.logger ?? pino({ enabled: false }), opts.overlayXattrs ?? 'trusted');
    await fsp.mkdir(path.join(s.dir, 'empty'), { recursive: true });
    await s.unmountStale();
    await fsp.rm(path.join(s.dir, 'views'), { recursive: true, force: true });
    await fsp.mkdir(path.join(s.dir, 'views'));
    await s.load();
    // index=on ties an upper dir to its lowers by file handle; our lowers are shared and reused.
    s.indexOff = await fsp.access('/sys/module/overlay/parameters/index').then(() => true, () => false);
    // In a user namespace a refused mount would otherwise only show at the first build.
    if (s.overlayXattrs === 'user') await s.probeMount();
    return s;
  }

  async prepare(parent: string | undefined, signal?: AbortSignal): Promise<ActiveSnapshot> {
    signal?.throwIfAborted();
    if (parent !== undefined) this.committed(parent, 'prepare a snapshot on');
    const id = randomBytes(12).toString('hex');
    const sdir = path.join(this.dir, id);
    await fsp.mkdir(path.join(sdir, 'fs'), { recursive: true });
    await fsp.mkdir(path.join(sdir, 'work'));
    const info: SnapshotInfo = { id, parent, kind: 'active', createdAt: new Date().toISOString() };
    // A crash before this write leaves a dir without metadata, which open() removes.
    await this.writeMeta(info);
    this.metas.set(id, info);
    return {
      id,
      parent,
      mount: () => this.mountActive(id),
      release: async () => {
        if (this.metas.get(id)?.kind === 'active') await this.remove(id);
      },
    };
  }

  async commit(active: ActiveSnapshot): Promise<string> {
    const info = this.metas.get(active.id);
    if (!info || info.kind !== 'active') throw new BuildError('failed-precondition', `Cannot commit snapshot ${active.id}: it is not an active snapshot`);
    await this.unmountActive(active.id);
    const sdir = path.join(this.dir, active.id);
    await fsp.rm(path.join(sdir, 'work'), { recursive: true, force: true });
    // The layer's files must be on disk before the metadata says the snapshot exists.
    await execFileP('sync', ['-f', path.join(sdir, 'fs')]);
    const done: SnapshotInfo = { ...info, kind: 'committed' };
    await this.writeMeta(done);
    this.metas.set(active.id, done);
    return active.id;
  }

  async get(id: string): Promise<SnapshotInfo | undefined> {
    const info = this.metas.get(id);
    return info && { ...info };
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
    } else {
      await this.unmountActive(id);
    }
    this.metas.delete(id);
    // Metadata first: a crash in between leaves a dir without metadata, removed at open.
    await fsp.rm(path.join(this.dir, id, META), { force: true });
    await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
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

  /**
   * Proves that this process may mount overlay here and that the file system keeps the user.*
   * attributes overlay's markers need (overlay itself mounts without them, on ramfs say, and
   * would then lose opaque directories): writes one, then mounts and unmounts a throwaway overlay.
   */
  private async probeMount(): Promise<void> {
    const dir = path.join(this.dir, 'views', `probe-${randomBytes(6).toString('hex')}`);
    for (const d of ['lower', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(dir, d), { recursive: true });
    const rel = path.relative(this.dir, dir);
    try {
      await assertOverlayXattrsReadable(dir, this.overlayXattrs, 'overlay opaque markers');
      await this.mountOverlay('probe', `lowerdir=${rel}/lower,upperdir=${rel}/upper,workdir=${rel}/work`, path.join(dir, 'merged'), false);
      await unmount(path.join(dir, 'merged'));
    } catch (err) {
      throw new BuildError(
        'failed-precondition',
        `Cannot use overlayfs in this user namespace (mount option userxattr needs Linux 5.11 or later and a file system that keeps user.* attributes): ${(err as Error).message}; no copying snapshotter exists yet to fall back to`,
        { cause: err },
      );
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  private async mountOverlay(id: string, layers: string, target: string, readonly: boolean): Promise<void> {
    const options = [layers, ...(this.overlayXattrs === 'user' ? ['userxattr'] : []), ...(this.indexOff ? ['index=off'] : []), ...(readonly ? ['ro'] : [])].join(',');
    if (options.length > MAX_OPTIONS) {
      throw new BuildError('internal', `Cannot mount snapshot ${id}: its ${layers.split(':').length} layers need mount options longer than ${MAX_OPTIONS} bytes`);
    }
    try {
      // Relative layer paths resolve against the cwd of the mount process: the snapshots dir.
      await execFileP('mount', ['-t', 'overlay', 'overlay', '-o', options, target], { cwd: this.dir });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? String(err);
      throw new BuildError('internal', `Cannot mount snapshot ${id}: ${stderr.trim()}`, { cause: err });
    }
  }

  private async writeMeta(info: SnapshotInfo): Promise<void> {
    const file = path.join(this.dir, info.id, META);
    const tmp = `${file}.tmp`;
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(info));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    const dh = await fsp.open(path.dirname(file), 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  private async load(): Promise<void> {
    for (const name of await fsp.readdir(this.dir)) {
      if (name === 'empty' || name === 'views') continue;
      const sdir = path.join(this.dir, name);
      const read = await readMeta(path.join(sdir, META));
      const damage = read.kind === 'damaged' ? read.reason : read.kind === 'ok' && read.info.id !== name ? `${META} names snapshot ${read.info.id}` : undefined;
      if (damage !== undefined) {
        // The metadata is written atomically: damage is not a crash's doing but the disk's or
        // someone's, and worth a line. What it described (parent, committed or not) is lost.
        this.log.warn({ snapshot: name, dir: sdir, reason: damage }, `Cannot load snapshot ${name}: its metadata is damaged (${damage}); deleting the snapshot and its layer`);
        await fsp.rm(sdir, { recursive: true, force: true });
      } else if (read.kind === 'ok' && read.info.kind === 'committed') {
        this.metas.set(name, read.info);
        await fsp.rm(path.join(sdir, 'merged'), { recursive: true, force: true });
      } else {
        // Active when the daemon stopped, or never finished being created: nothing can use it.
        await fsp.rm(sdir, { recursive: true, force: true });
      }
    }
    // A committed snapshot whose parent is gone can never be mounted again, nor can what is
    // layered on it: all of them are found first, then deleted (remove() would refuse a
    // snapshot that still has children).
    const orphans = new Map<string, string>();
    for (let changed = true; changed; ) {
      changed = false;
      for (const info of this.metas.values()) {
        if (info.parent === undefined || orphans.has(info.id)) continue;
        if (!this.metas.has(info.parent) || orphans.has(info.parent)) {
          orphans.set(info.id, info.parent);
          changed = true;
        }
      }
    }
    for (const id of orphans.keys()) {
      this.metas.delete(id);
      await fsp.rm(path.join(this.dir, id, META), { force: true });
      await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
    }
    if (orphans.size > 0) {
      // The parents at the root of the loss: damaged (logged above) or deleted by hand.
      const ids = [...orphans.keys()].sort();
      const missingParents = [...new Set(orphans.values())].filter((p) => !orphans.has(p)).sort();
      this.log.warn(
        { snapshots: ids, missingParents },
        `Cannot keep snapshots ${ids.join(', ')}: they are layered on snapshots that are gone (${missingParents.join(', ')}); deleting them`,
      );
    }
  }

  private async unmountStale(): Promise<void> {
    const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
    const prefix = this.dir + '/';
    const stale = text
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((p): p is string => p !== undefined)
      .map(unescapeMountinfo)
      .filter((p) => p.startsWith(prefix))
      .sort((a, b) => b.length - a.length);
    for (const p of stale) await unmount(p);
  }
}

async function readMeta(file: string): Promise<MetaRead> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No metadata: a crash between mkdir and the first write, or in the middle of remove().
    if (code === 'ENOENT') return { kind: 'missing' };
    // EMFILE, EACCES, EIO...: the file may be fine; deleting the snapshot and all built on it
    // for a passing error would lose cache, so the daemon does not start instead.
    throw new BuildError('internal', `Cannot open the snapshotter: ${file} cannot be read: ${code ?? (err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { kind: 'damaged', reason: `${META} is not JSON: ${(err as Error).message}` };
  }
  const parsed = metaSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: 'damaged', reason: `${META} does not describe a snapshot: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}` };
  }
  return { kind: 'ok', info: parsed.data };
}

/** Unmounts, falling back to a lazy unmount when something still holds the mount busy. */
async function unmount(target: string): Promise<void> {
  try {
    await execFileP('umount', [target]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    if (/not mounted|no mount point/i.test(stderr)) return;
    try {
      await execFileP('umount', ['-l', target]);
    } catch (err2) {
      const stderr2 = (err2 as { stderr?: string }).stderr ?? String(err2);
      throw new BuildError('internal', `Cannot unmount ${target}: ${stderr2.trim()}`, { cause: err2 });
    }
  }
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}
