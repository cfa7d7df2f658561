import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { removeTreeAside } from '../remove-tree';
import { parseIndex, type IndexEntry } from './listing-index';

/** Bounds of the kept copies: defaults of {@link LocalsStoreOptions}. */
export const DEFAULT_KEPT_LOCALS_MAX_KEYS = 32;
export const DEFAULT_KEPT_LOCALS_MAX_BYTES = 10 * 1024 ** 3;

export interface LocalsStoreOptions {
  /** `<root>/locals` */
  dir: string;
  /** most keys kept; the least recently used unreferenced ones go first */
  maxKeys?: number;
  /** most bytes of file content kept across the keys' current generations */
  maxBytes?: number;
  /** a removal that failed (the store goes on; the directory is retried at the next start) */
  onError?: (err: Error, dir: string) => void;
}

/**
 * One immutable copy of a local: `<dir>/<key>/gen-<n>/tree` with the listing it was built
 * from beside it (`index.jsonl`). Nothing changes it once published; it is removed when it is
 * neither its key's current generation nor leased by a build.
 */
export interface Generation {
  key: string;
  n: number;
  /** the directory a build reads */
  tree: string;
  entries: number;
  bytes: number;
}

/** What `list()` reports of a key (for `buildctl du` later). */
export interface KeptLocal {
  key: string;
  generation: number;
  entries: number;
  bytes: number;
  lastUsed: Date;
  inUse: boolean;
}

interface KeyState {
  current?: Generation;
  lastUsed: number;
  /** leases per generation number */
  refs: Map<number, number>;
  /** tail of the per-key lock chain */
  lock: Promise<void>;
  locked: boolean;
  /** builds waiting for the lock */
  waiters: number;
}

/** How many generations' parsed indexes stay in memory (a 20,000-entry index is a few MB). */
const INDEXES_KEPT = 4;

/**
 * The copies of keyed locals the daemon keeps between builds (BuildKit keeps its local sources
 * as mutable cache refs found by shared key; here each sync publishes a new immutable
 * generation, so a build never sees a copy change under it and a failed sync leaves nothing).
 *
 * Lifecycle: `open()` once at daemon start (removes temp dirs a killed daemon left and every
 * generation but the newest per key); then per build: `lock()` the keys it syncs, `lease()` the
 * current generation, build a new one in `tempDir()` and `publish()` it, release the leases when
 * the build ends. Old generations and evicted keys are removed once unreferenced.
 */
export class LocalsStore {
  private readonly keys = new Map<string, KeyState>();
  private readonly removals = new Set<Promise<void>>();
  /** parsed indexes of recent generations, `key/n`, least recently used first */
  private readonly indexes = new Map<string, ReadonlyMap<string, IndexEntry>>();
  private readonly maxKeys: number;
  private readonly maxBytes: number;
  /** generation numbers are unique across keys and never reused, so a dropped key's removal never races a new one */
  private next = 1;

  private constructor(private readonly opts: LocalsStoreOptions) {
    this.maxKeys = opts.maxKeys ?? DEFAULT_KEPT_LOCALS_MAX_KEYS;
    this.maxBytes = opts.maxBytes ?? DEFAULT_KEPT_LOCALS_MAX_BYTES;
  }

  static async open(opts: LocalsStoreOptions): Promise<LocalsStore> {
    const store = new LocalsStore(opts);
    await fsp.mkdir(opts.dir, { recursive: true, mode: 0o700 });
    for (const key of await fsp.readdir(opts.dir)) await store.load(key);
    store.evict();
    return store;
  }

  /** Takes the sync lock of every key, in sorted order (two builds never wait on each other in a cycle). */
  async lock(keys: readonly string[], signal: AbortSignal): Promise<() => void> {
    const held: Array<() => void> = [];
    try {
      for (const key of [...new Set(keys)].sort()) held.push(await this.lockOne(key, this.state(key), signal));
    } catch (err) {
      for (const r of held) r();
      throw err;
    }
    return () => held.splice(0).forEach((r) => r());
  }

  /** The key's current generation with a lease on it, or undefined when none is kept. */
  lease(key: string): { generation: Generation; release: () => void } | undefined {
    const st = this.keys.get(key);
    const gen = st?.current;
    if (!st || !gen) return undefined;
    st.lastUsed = Date.now();
    // the generation dir's mtime is its last use after a restart (for least-recently-used eviction)
    const now = new Date(st.lastUsed);
    void fsp.utimes(this.genDir(key, gen.n), now, now).catch(() => undefined);
    return { generation: gen, release: this.take(st, gen) };
  }

  /**
   * The index of a generation (the listing it was built from), read-only. The last few are kept
   * parsed in memory: an unchanged rebuild of a 20,000-file context otherwise spends ~80 ms
   * reading and parsing what the previous build just wrote.
   */
  async index(gen: Generation): Promise<ReadonlyMap<string, IndexEntry>> {
    const id = `${gen.key}/${gen.n}`;
    const cached = this.indexes.get(id);
    if (cached) {
      this.indexes.delete(id);
      this.indexes.set(id, cached);
      return cached;
    }
    const index = parseIndex(await fsp.readFile(path.join(this.genDir(gen.key, gen.n), 'index.jsonl'), 'utf8'));
    // a generation removed meanwhile must not come back into the cache
    if (this.keys.get(gen.key)?.current === gen || this.keys.get(gen.key)?.refs.has(gen.n)) this.remember(id, index);
    return index;
  }

  private remember(id: string, index: ReadonlyMap<string, IndexEntry>): void {
    this.indexes.set(id, index);
    for (const old of this.indexes.keys()) {
      if (this.indexes.size <= INDEXES_KEPT) break;
      this.indexes.delete(old);
    }
  }

  /** A fresh directory to build a generation in; removed by the caller on failure (or at the next start). */
  async tempDir(key: string): Promise<string> {
    const dir = path.join(this.opts.dir, key, `tmp-${randomUUID()}`);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /**
   * Makes `tmp` (holding `tree/` and `index.jsonl`, complete and synced) the key's current
   * generation by one rename, and leases it. The previous generation goes once unreferenced.
   */
  async publish(key: string, tmp: string, stats: { entries: number; bytes: number }, index?: ReadonlyMap<string, IndexEntry>): Promise<{ generation: Generation; release: () => void }> {
    const st = this.state(key);
    const n = this.next++;
    await fsp.rename(tmp, this.genDir(key, n));
    const gen: Generation = { key, n, tree: path.join(this.genDir(key, n), 'tree'), entries: stats.entries, bytes: stats.bytes };
    const old = st.current;
    st.current = gen;
    st.lastUsed = Date.now();
    const release = this.take(st, gen);
    // the index just written is what the next build of this key compares with
    if (index) this.remember(`${key}/${n}`, index);
    if (old) this.collect(st, old);
    this.evict();
    return { generation: gen, release };
  }

  /**
   * Takes the key's current generation `gen` out of the store, to be updated in place into the
   * next one (see generation-update.ts): only when it is current and `lease` (the caller's, under
   * the key's lock) is its only lease, so no build reads it. Its directory is renamed to
   * `into`; the key has no kept copy until the next publish, so a sync that fails meanwhile
   * leaves nothing to trust (its temp dir goes, and the next sync starts from nothing). The
   * lease is used up. False, with nothing changed, when another build holds the generation.
   */
  async claim(key: string, gen: Generation, into: string): Promise<boolean> {
    const st = this.keys.get(key);
    if (!st || st.current !== gen || st.refs.get(gen.n) !== 1 || !st.locked) return false;
    await fsp.rename(this.genDir(key, gen.n), into);
    st.current = undefined;
    st.refs.delete(gen.n);
    this.indexes.delete(`${key}/${gen.n}`);
    return true;
  }

  list(): KeptLocal[] {
    return [...this.keys.entries()]
      .filter(([, st]) => st.current !== undefined)
      .map(([key, st]) => {
        const gen = st.current as Generation;
        return { key, generation: gen.n, entries: gen.entries, bytes: gen.bytes, lastUsed: new Date(st.lastUsed), inUse: inUse(st) };
      });
  }

  /** Removes every kept copy no build uses (all, or those `filter` picks); resolves when they are gone. */
  async prune(filter: (k: KeptLocal) => boolean = () => true): Promise<KeptLocal[]> {
    const gone = this.list().filter((k) => !k.inUse && filter(k));
    for (const k of gone) this.drop(k.key);
    await this.idle();
    return gone;
  }

  /** Resolves when every removal started so far has ended (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.removals.size > 0) await Promise.allSettled([...this.removals]);
  }

  private async load(key: string): Promise<void> {
    const keyDir = path.join(this.opts.dir, key);
    const names = await fsp.readdir(keyDir).catch(() => [] as string[]);
    const gens = names.flatMap((n) => (/^gen-(\d+)$/.exec(n) ? [Number(n.slice(4))] : [])).sort((a, b) => b - a);
    // temp dirs of a killed daemon and generations no build can still lease are never trusted
    for (const n of names) if (!/^gen-\d+$/.test(n) || Number(n.slice(4)) !== gens[0]) await this.remove(path.join(keyDir, n));
    const newest = gens[0];
    if (newest === undefined) {
      await this.remove(keyDir);
      return;
    }
    const st = this.state(key);
    this.next = Math.max(this.next, newest + 1);
    const gen: Generation = { key, n: newest, tree: path.join(this.genDir(key, newest), 'tree'), entries: 0, bytes: 0 };
    try {
      for (const e of (await this.index(gen)).values()) {
        gen.entries++;
        gen.bytes += e.size;
      }
      st.lastUsed = (await fsp.stat(this.genDir(key, newest))).mtimeMs;
      st.current = gen;
    } catch {
      this.keys.delete(key);
      await this.remove(keyDir);
    }
  }

  private state(key: string): KeyState {
    let st = this.keys.get(key);
    if (!st) {
      st = { lastUsed: Date.now(), refs: new Map(), lock: Promise.resolve(), locked: false, waiters: 0 };
      this.keys.set(key, st);
    }
    return st;
  }

  private async lockOne(key: string, st: KeyState, signal: AbortSignal): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const before = st.lock;
    st.lock = before.then(() => mine);
    st.waiters++;
    try {
      await new Promise<void>((resolve, reject) => {
        const fail = (): void =>
          reject(signal.reason instanceof BuildError ? signal.reason : new BuildError('cancelled', 'Cannot sync a local: the build was cancelled'));
        if (signal.aborted) return fail();
        signal.addEventListener('abort', fail, { once: true });
        void before.then(() => {
          signal.removeEventListener('abort', fail);
          resolve();
        });
      });
    } catch (err) {
      // our turn still comes in the chain; pass it straight on
      void before.then(() => release());
      throw err;
    } finally {
      st.waiters--;
    }
    st.locked = true;
    return () => {
      st.locked = false;
      release();
      // a key whose sync failed before anything was kept leaves no state behind
      if (!st.current && !inUse(st) && this.keys.get(key) === st) this.keys.delete(key);
      this.evict();
    };
  }

  private take(st: KeyState, gen: Generation): () => void {
    st.refs.set(gen.n, (st.refs.get(gen.n) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (st.refs.get(gen.n) ?? 1) - 1;
      if (left > 0) st.refs.set(gen.n, left);
      else st.refs.delete(gen.n);
      if (st.current !== gen) this.collect(st, gen);
      this.evict();
    };
  }

  /** Removes a generation that is not current once no build leases it. */
  private collect(st: KeyState, gen: Generation): void {
    if (st.current === gen || st.refs.has(gen.n)) return;
    this.indexes.delete(`${gen.key}/${gen.n}`);
    this.removeLater(this.genDir(gen.key, gen.n));
  }

  /** Least recently used first, drops unreferenced keys until both bounds hold. */
  private evict(): void {
    const kept = [...this.keys.entries()].filter(([, st]) => st.current !== undefined);
    let count = kept.length;
    let bytes = kept.reduce((sum, [, st]) => sum + (st.current as Generation).bytes, 0);
    for (const [key, st] of kept.sort((a, b) => a[1].lastUsed - b[1].lastUsed)) {
      if (count <= this.maxKeys && bytes <= this.maxBytes) return;
      if (inUse(st)) continue;
      count--;
      bytes -= (st.current as Generation).bytes;
      this.drop(key);
    }
  }

  /** Forgets a key's copy; its directory stays (empty) until the next start, so a new sync may use it meanwhile. */
  private drop(key: string): void {
    const st = this.keys.get(key);
    if (!st?.current || inUse(st)) return;
    const gen = st.current;
    st.current = undefined;
    this.keys.delete(key);
    this.indexes.delete(`${key}/${gen.n}`);
    this.removeLater(this.genDir(key, gen.n));
  }

  private removeLater(dir: string): void {
    const p = this.remove(dir).finally(() => this.removals.delete(p));
    this.removals.add(p);
  }

  private async remove(dir: string): Promise<void> {
    await removeTreeAside(dir).catch((err: Error) => this.opts.onError?.(err, dir));
  }

  private genDir(key: string, n: number): string {
    return path.join(this.opts.dir, key, `gen-${n}`);
  }
}

function inUse(st: KeyState): boolean {
  return st.locked || st.waiters > 0 || st.refs.size > 0;
}
