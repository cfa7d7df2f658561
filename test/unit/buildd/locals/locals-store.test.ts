import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalsStore } from '../../../../buildd/locals/locals-store';

describe('LocalsStore', () => {
  let tmp: string;
  const signal = new AbortController().signal;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-locals-store-'));
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  /** Publishes a generation of `key` holding one file of `bytes` bytes; returns its lease. */
  async function publish(store: LocalsStore, key: string, bytes: number) {
    const unlock = await store.lock([key], signal);
    try {
      const dir = await store.tempDir(key);
      await fsp.mkdir(path.join(dir, 'tree'));
      await fsp.writeFile(path.join(dir, 'tree', 'f'), Buffer.alloc(bytes));
      await fsp.writeFile(path.join(dir, 'index.jsonl'), JSON.stringify({ p: 'f', t: 'FILE', m: 0o644, u: 0, g: 0, mt: 0, s: bytes }) + '\n');
      return await store.publish(key, dir, { entries: 1, bytes });
    } finally {
      unlock();
    }
  }

  it('keeps a generation a build leases until it is done, then removes it', async () => {
    const store = await LocalsStore.open({ dir: tmp });
    const first = await publish(store, 'a', 1);
    const second = await publish(store, 'a', 2);
    await store.idle();
    expect(await fsp.readFile(path.join(first.generation.tree, 'f'))).toHaveLength(1);
    first.release();
    await store.idle();
    await expect(fsp.stat(first.generation.tree)).rejects.toMatchObject({ code: 'ENOENT' });
    second.release();
    await store.idle();
    expect(store.list()).toMatchObject([{ key: 'a', bytes: 2, inUse: false }]);
    expect(store.lease('a')?.generation.tree).toBe(second.generation.tree);
  });

  it('hands the current generation over to be updated in place only under the lock and with no other lease, and then keeps nothing for the key', async () => {
    const store = await LocalsStore.open({ dir: tmp });
    const first = await publish(store, 'a', 3);
    first.release();
    const unlock = await store.lock(['a'], signal);
    try {
      const mine = store.lease('a');
      const other = store.lease('a');
      if (!mine || !other) throw new Error('no lease');
      const into = path.join(await store.tempDir('a'), 'claimed');
      // another build still reads it
      expect(await store.claim('a', mine.generation, into)).toBe(false);
      other.release();
      expect(await store.claim('a', mine.generation, into)).toBe(true);
      expect(await fsp.readFile(path.join(into, 'tree', 'f'))).toHaveLength(3);
      await expect(fsp.stat(path.dirname(mine.generation.tree))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(store.list()).toEqual([]);
      expect(store.lease('a')).toBeUndefined();
    } finally {
      unlock();
    }
    // not without the lock
    const again = await publish(store, 'a', 4);
    expect(await store.claim('a', again.generation, path.join(tmp, 'x'))).toBe(false);
    again.release();
    // a restart trusts nothing of a claimed generation's temp dir
    const reopened = await LocalsStore.open({ dir: tmp });
    expect(reopened.list()).toMatchObject([{ key: 'a', bytes: 4 }]);
    expect((await fsp.readdir(path.join(tmp, 'a'))).filter((n) => n.startsWith('tmp-'))).toEqual([]);
  });

  it('gives the index a publish handed it without reading the file, and reads the file for a generation it does not hold', async () => {
    const store = await LocalsStore.open({ dir: tmp });
    const unlock = await store.lock(['a'], signal);
    const dir = await store.tempDir('a');
    await fsp.mkdir(path.join(dir, 'tree'));
    await fsp.writeFile(path.join(dir, 'index.jsonl'), JSON.stringify({ p: 'f', t: 'FILE', m: 0o644, u: 0, g: 0, mt: 0, s: 1 }) + '\n');
    const entry = { path: 'f', type: 'FILE' as const, mode: 0o644, uid: 0, gid: 0, mtime_ms: 0, size: 1, link_target: '', xattrs: {} };
    const published = await store.publish('a', dir, { entries: 1, bytes: 1 }, new Map([['f', entry]]));
    unlock();
    // the file is gone: only the remembered index can answer
    await fsp.rm(path.join(path.dirname(published.generation.tree), 'index.jsonl'));
    expect((await store.index(published.generation)).get('f')).toEqual(entry);
    // a generation it never held (another store over the same dir) is read from its file
    const other = await publish(store, 'b', 2);
    const reopened = await LocalsStore.open({ dir: tmp });
    const lease = reopened.lease('b');
    expect((await reopened.index(lease!.generation)).get('f')).toMatchObject({ size: 2 });
    lease!.release();
    other.release();
    published.release();
  });

  it('evicts the least recently used unreferenced keys past the key count and byte bounds', async () => {
    const store = await LocalsStore.open({ dir: tmp, maxKeys: 2, maxBytes: 100 });
    (await publish(store, 'a', 10)).release();
    (await publish(store, 'b', 10)).release();
    const held = await publish(store, 'c', 10);
    await store.idle();
    expect(store.list().map((k) => k.key).sort()).toEqual(['b', 'c']);
    // over the bytes: b goes, c stays while leased even though it alone is over
    const big = await publish(store, 'd', 95);
    await store.idle();
    expect(store.list().map((k) => k.key).sort()).toEqual(['c', 'd']);
    held.release();
    big.release();
    await store.idle();
    expect(store.list().map((k) => k.key)).toEqual(['d']);
  });

  it('prunes what no build uses, and reopens the newest generation of each key after a restart, without temp dirs', async () => {
    let store = await LocalsStore.open({ dir: tmp });
    (await publish(store, 'a', 3)).release();
    const held = await publish(store, 'b', 4);
    expect((await store.prune()).map((k) => k.key)).toEqual(['a']);
    held.release();
    await store.idle();
    await fsp.mkdir(path.join(tmp, 'b', 'tmp-killed'), { recursive: true });
    store = await LocalsStore.open({ dir: tmp });
    expect(store.list()).toMatchObject([{ key: 'b', bytes: 4, entries: 1 }]);
    expect(await fsp.readdir(path.join(tmp, 'b'))).toEqual([path.basename(path.dirname(held.generation.tree))]);
    expect(await fsp.readdir(tmp)).toEqual(['b']);
  });

  it('serializes the sync of one key, and a cancelled waiter passes its turn on', async () => {
    const store = await LocalsStore.open({ dir: tmp });
    const order: string[] = [];
    const unlockFirst = await store.lock(['k', 'j'], signal);
    const cancel = new AbortController();
    const cancelled = store.lock(['k'], cancel.signal);
    const third = store.lock(['j', 'k'], signal).then((u) => {
      order.push('third');
      return u;
    });
    cancel.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 'cancelled' });
    order.push('first done');
    unlockFirst();
    (await third)();
    expect(order).toEqual(['first done', 'third']);
  });
});
