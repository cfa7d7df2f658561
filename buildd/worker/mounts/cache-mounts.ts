import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino, { type Logger } from 'pino';
import { BuildError } from '../../../solver/build-error';
import { sha256Digest } from '../../../solver/canonical-json';
import { CacheMountOpt } from '../../../solver/op';
import { TreeCopier } from '../../../store/tree-copier';

/** A directory that seeds a new cache instance; `release` when the copy is done. */
export interface CacheSeed {
  dir: string;
  release(): Promise<void>;
}

/** What a step asks for. */
export interface CacheMountRequest extends CacheMountOpt {
  /**
   * what the cache starts from (BuildKit keys a cache dir by id and the ref it is seeded
   * from): steps that seed the same id from different content get different caches
   */
  seedKey: string;
  /** called only when a new instance is made; absent: it starts as an empty 0755 root-owned directory */
  seed?: () => Promise<CacheSeed>;
  /** a human name for logs, e.g. the step */
  step: string;
  signal: AbortSignal;
}

/** One cache instance held by a step; `release()` once the step's container is gone (idempotent). */
export interface CacheMountLease {
  path: string;
  release(): void;
}

interface Instance {
  users: number;
  exclusive: boolean;
}

/** One cache directory on disk, as du lists it. */
export interface CacheMountInstance {
  /** the entry's hash (of id and seed) and the instance's number: what remove() takes */
  hash: string;
  n: number;
  /** the cache's id (`RUN --mount=type=cache,id=`) */
  id: string;
  dir: string;
  inUse: boolean;
  /** when a step last let it go (its directory's mtime) */
  lastUsedMs: number;
}

interface Entry {
  dir: string;
  instances: Map<number, Instance>;
  /** instance numbers found on disk or made since */
  known: Set<number> | undefined;
  waiters: Set<() => void>;
  /** serializes making instances (and reading the directory) per entry */
  chain: Promise<unknown>;
}

/**
 * The persistent directories behind `RUN --mount=type=cache`, one per (id, seed) under
 * `<root>/cache-mounts/<sha256>/`, holding numbered instances `0`, `1`, ... (more than one
 * only when `sharing=private` steps overlapped). Plain directories rather than snapshots:
 * a cache is mutable by every step that mounts it, is never committed, diffed or exported,
 * and must survive a daemon restart on its own, which a directory does without metadata.
 * An instance is made in a `tmp-*` directory (seeded there) and renamed into place, so a
 * crash never leaves a half-seeded cache; `open` removes such leftovers.
 *
 * Sharing, within this daemon (BuildKit's is per daemon too): `shared` steps use instance 0
 * together; a `locked` step waits until nobody uses instance 0, and holds it alone; a
 * `private` step takes any instance nobody uses, or makes a new one.
 *
 * Lifecycle: one per daemon (`open`), shared by all builds; every lease is released by the
 * step that took it, in every outcome.
 */
export class CacheMounts {
  private readonly entries = new Map<string, Entry>();

  private constructor(private readonly root: string, private readonly log: Logger) {}

  static async open(root: string, opts: { logger?: Logger } = {}): Promise<CacheMounts> {
    const dir = path.resolve(root);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of await fsp.readdir(dir)) {
      const entryDir = path.join(dir, name);
      for (const child of await fsp.readdir(entryDir).catch(() => [] as string[])) {
        if (child.startsWith('tmp-')) await fsp.rm(path.join(entryDir, child), { recursive: true, force: true });
      }
    }
    return new CacheMounts(dir, opts.logger ?? pino({ enabled: false }));
  }

  /** Waits for an instance that `req.sharing` allows, making (and seeding) it when needed. */
  async acquire(req: CacheMountRequest): Promise<CacheMountLease> {
    const hash = sha256Digest(`${req.id}\0${req.seedKey}`).slice('sha256:'.length);
    let entry = this.entries.get(hash);
    if (!entry) {
      entry = { dir: path.join(this.root, hash), instances: new Map(), known: undefined, waiters: new Set(), chain: Promise.resolve() };
      this.entries.set(hash, entry);
    }
    const e = entry;
    const known = await this.serialized(e, async () => (e.known ??= await this.readInstances(e, req.id)));
    let logged = false;
    for (;;) {
      if (req.signal.aborted) throw new BuildError('cancelled', `Cannot mount cache ${req.id}: the step was cancelled`);
      const n = this.pick(e, known, req.sharing);
      if (n !== undefined) {
        const inst = this.instance(e, n);
        inst.users++;
        if (req.sharing !== 'shared') inst.exclusive = true;
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          inst.users--;
          if (req.sharing !== 'shared') inst.exclusive = false;
          // the directory's mtime is its last use, for du and GC (across restarts)
          const now = new Date();
          void fsp.utimes(path.join(e.dir, String(n)), now, now).catch(() => undefined);
          for (const wake of [...e.waiters]) wake();
        };
        try {
          const dir = await this.serialized(e, () => this.ensureInstance(e, n, req));
          known.add(n);
          return { path: dir, release };
        } catch (err) {
          release();
          throw err;
        }
      }
      if (!logged) {
        // the tests (and an operator wondering why a step does not start) look for this line
        this.log.debug({ id: req.id, sharing: req.sharing, step: req.step }, 'a step waits for a locked cache mount');
        logged = true;
      }
      await this.waitForRelease(e, req);
    }
  }

  /** Every cache directory on disk (du, prune). */
  async list(): Promise<CacheMountInstance[]> {
    const out: CacheMountInstance[] = [];
    for (const hash of await fsp.readdir(this.root).catch(() => [] as string[])) {
      if (!/^[a-f0-9]{64}$/.test(hash)) continue;
      const entryDir = path.join(this.root, hash);
      const id = (await fsp.readFile(path.join(entryDir, 'id'), 'utf8').catch(() => '')).trim();
      for (const name of await fsp.readdir(entryDir).catch(() => [] as string[])) {
        if (!/^\d+$/.test(name)) continue;
        const st = await fsp.stat(path.join(entryDir, name)).catch(() => undefined);
        if (!st?.isDirectory()) continue;
        const inst = this.entries.get(hash)?.instances.get(Number(name));
        out.push({ hash, n: Number(name), id, dir: path.join(entryDir, name), inUse: inst !== undefined && (inst.users > 0 || inst.exclusive), lastUsedMs: st.mtimeMs });
      }
    }
    return out;
  }

  /**
   * Removes instance `n` of entry `hash` when no step uses it; false when one does. Done in the
   * entry's serialized chain, so a step that picks it meanwhile gets a new, empty one.
   */
  async remove(hash: string, n: number): Promise<boolean> {
    if (!/^[a-f0-9]{64}$/.test(hash)) return false;
    let e = this.entries.get(hash);
    if (!e) {
      e = { dir: path.join(this.root, hash), instances: new Map(), known: undefined, waiters: new Set(), chain: Promise.resolve() };
      this.entries.set(hash, e);
    }
    const entry = e;
    return this.serialized(entry, async () => {
      const inst = entry.instances.get(n);
      if (inst !== undefined && (inst.users > 0 || inst.exclusive)) return false;
      const dir = path.join(entry.dir, String(n));
      if (!(await isDir(dir))) return false;
      const tmp = path.join(entry.dir, `tmp-${randomBytes(8).toString('hex')}`);
      await fsp.rename(dir, tmp);
      entry.known?.delete(n);
      await fsp.rm(tmp, { recursive: true, force: true });
      return true;
    });
  }

  private pick(e: Entry, known: Set<number>, sharing: CacheMountOpt['sharing']): number | undefined {
    const free = (n: number): boolean => {
      const inst = e.instances.get(n);
      return inst === undefined || (inst.users === 0 && !inst.exclusive);
    };
    if (sharing === 'shared') return e.instances.get(0)?.exclusive ? undefined : 0;
    if (sharing === 'locked') return free(0) ? 0 : undefined;
    const candidates = [...new Set([0, ...known, ...e.instances.keys()])].sort((a, b) => a - b);
    return candidates.find(free) ?? candidates[candidates.length - 1] + 1;
  }

  private instance(e: Entry, n: number): Instance {
    let inst = e.instances.get(n);
    if (!inst) {
      inst = { users: 0, exclusive: false };
      e.instances.set(n, inst);
    }
    return inst;
  }

  private waitForRelease(e: Entry, req: CacheMountRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        e.waiters.delete(done);
        req.signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        e.waiters.delete(done);
        reject(new BuildError('cancelled', `Cannot mount cache ${req.id}: the step was cancelled`));
      };
      e.waiters.add(done);
      req.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private serialized<T>(e: Entry, f: () => Promise<T>): Promise<T> {
    const next = e.chain.then(f, f);
    e.chain = next.catch(() => undefined);
    return next;
  }

  private async readInstances(e: Entry, id: string): Promise<Set<number>> {
    await fsp.mkdir(e.dir, { recursive: true, mode: 0o700 });
    // for people looking at the directory: which cache this is
    await fsp.writeFile(path.join(e.dir, 'id'), `${id}\n`, { mode: 0o600 });
    const names = await fsp.readdir(e.dir);
    return new Set(names.filter((n) => /^\d+$/.test(n)).map(Number));
  }

  private async ensureInstance(e: Entry, n: number, req: CacheMountRequest): Promise<string> {
    const dir = path.join(e.dir, String(n));
    if (await isDir(dir)) return dir;
    const tmp = path.join(e.dir, `tmp-${randomBytes(8).toString('hex')}`);
    try {
      await fsp.mkdir(tmp, { mode: 0o755 });
      await fsp.chmod(tmp, 0o755);
      if (req.seed) {
        const seed = await req.seed();
        try {
          const st = await fsp.stat(seed.dir);
          if (!st.isDirectory()) throw new BuildError('invalid-argument', `Cannot seed cache mount ${req.id}: its source is not a directory`);
          await TreeCopier.copy({ owner: null }, (c) => c.copyChildren(seed.dir, tmp));
          // the cache's root takes the seed's owner and mode (BuildKit's mode/uid/gid come this way)
          await fsp.lchown(tmp, st.uid, st.gid);
          await fsp.chmod(tmp, st.mode & 0o7777);
        } finally {
          await seed.release();
        }
      }
      await fsp.rename(tmp, dir);
      this.log.debug({ id: req.id, dir, step: req.step }, 'made a cache mount directory');
      return dir;
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      if (err instanceof BuildError) throw err;
      throw new BuildError('internal', `Cannot make cache mount ${req.id}: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fsp.lstat(p)).isDirectory();
  } catch {
    return false;
  }
}
