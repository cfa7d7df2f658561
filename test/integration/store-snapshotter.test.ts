import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { CacheStore } from '../../solver/cache-store';
import { MetaDb } from '../../store/meta-db';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { captureLogger } from '../helpers/capture-logger';
import { cleanupRoot, mountsUnder } from '../helpers/store-mounts';

let root: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-snap-'));
});

afterAll(async () => {
  await cleanupRoot(root);
});

describe('OverlaySnapshotter', () => {
  it('prepares, mounts, commits and chains layers', async () => {
    const s = await OverlaySnapshotter.open(root);
    const a = await s.prepare(undefined);
    expect((await s.get(a.id))?.kind).toBe('active');
    const ma = await a.mount();
    expect(await a.mount()).toBe(ma);
    await fsp.writeFile(path.join(ma, 'base.txt'), 'base');
    await fsp.writeFile(path.join(ma, 'gone.txt'), 'gone');
    const aid = await s.commit(a);
    expect((await s.get(aid))?.kind).toBe('committed');
    expect(await mountsUnder(root)).toEqual([]);

    const b = await s.prepare(aid);
    const mb = await b.mount();
    expect(await fsp.readFile(path.join(mb, 'base.txt'), 'utf8')).toBe('base');
    await fsp.rm(path.join(mb, 'gone.txt'));
    await fsp.writeFile(path.join(mb, 'child.txt'), 'child');
    const bid = await s.commit(b);
    expect(await s.chain(bid)).toEqual([aid, bid]);
    const whiteout = await fsp.lstat(path.join(await s.upperDir(bid), 'gone.txt'));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);

    const view = await s.mountView(bid);
    try {
      expect((await fsp.readdir(view.path)).sort()).toEqual(['base.txt', 'child.txt']);
      await expect(fsp.writeFile(path.join(view.path, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
      await expect(s.remove(bid)).rejects.toMatchObject({ code: 'failed-precondition', message: `Cannot remove snapshot ${bid}: a view of it is mounted` });
    } finally {
      await view.release();
    }
    await expect(s.remove(aid)).rejects.toMatchObject({ code: 'failed-precondition', message: `Cannot remove snapshot ${aid}: snapshot ${bid} is layered on it` });
    await s.remove(bid);
    await s.remove(aid);
    expect(await s.get(aid)).toBeUndefined();
  });

  it('keeps committed snapshots across a reopen and drops what a crash left active and mounted', async () => {
    const s1 = await OverlaySnapshotter.open(root);
    const a = await s1.prepare(undefined);
    await fsp.writeFile(path.join(await a.mount(), 'kept.txt'), 'kept');
    const aid = await s1.commit(a);
    const crashed = await s1.prepare(aid);
    const merged = await crashed.mount();
    const view = await s1.mountView(aid);
    expect((await mountsUnder(root)).sort()).toEqual([merged, view.path].sort());

    // s1 is abandoned without cleanup, as by kill -9.
    const log = captureLogger();
    const s2 = await OverlaySnapshotter.open(root, { logger: log.logger });
    // what a crash leaves is expected: no warning
    expect(log.at('warn')).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
    expect(await s2.get(crashed.id)).toBeUndefined();
    await expect(fsp.access(path.dirname(merged))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await s2.get(aid)).toMatchObject({ id: aid, kind: 'committed' });
    const v2 = await s2.mountView(aid);
    try {
      expect(await fsp.readFile(path.join(v2.path, 'kept.txt'), 'utf8')).toBe('kept');
    } finally {
      await v2.release();
    }
    await s2.remove(aid);
  });

  it('releases an active snapshot that is not committed, and names the snapshot when a mount fails', async () => {
    const s = await OverlaySnapshotter.open(root);
    const a = await s.prepare(undefined);
    await a.mount();
    await a.release();
    expect(await s.get(a.id)).toBeUndefined();
    expect(await mountsUnder(root)).toEqual([]);

    const base = await s.prepare(undefined);
    const baseId = await s.commit(base);
    const child = await s.prepare(baseId);
    await fsp.rm(await s.upperDir(baseId), { recursive: true });
    await expect(child.mount()).rejects.toMatchObject({ code: 'internal', message: expect.stringMatching(new RegExp(`^Cannot mount snapshot ${child.id}: .+`)) });
    await child.release();
    await s.remove(baseId);
  });

  it('refuses to prepare on an unknown or active parent', async () => {
    const s = await OverlaySnapshotter.open(root);
    await expect(s.prepare('0123456789abcdef01234567')).rejects.toMatchObject({ code: 'not-found', message: 'Cannot prepare a snapshot on snapshot 0123456789abcdef01234567: not in the snapshotter' });
    const a = await s.prepare(undefined);
    await expect(s.prepare(a.id)).rejects.toMatchObject({ code: 'failed-precondition', message: `Cannot prepare a snapshot on snapshot ${a.id}: it is not committed` });
    await a.release();
  });

  it('rejects prepare with the reason of an aborted signal, creating nothing', async () => {
    const s = await OverlaySnapshotter.open(root);
    const before = await fsp.readdir(path.join(root, 'snapshots'));
    const ac = new AbortController();
    const reason = new BuildError('cancelled', 'Cannot prepare a snapshot: the build was cancelled');
    ac.abort(reason);
    await expect(s.prepare(undefined, ac.signal)).rejects.toBe(reason);
    const plain = new AbortController();
    plain.abort();
    await expect(s.prepare(undefined, plain.signal)).rejects.toMatchObject({ name: 'AbortError', message: 'This operation was aborted' });
    expect(await fsp.readdir(path.join(root, 'snapshots'))).toEqual(before);
  });

  describe('a root made by an older buildd (one meta.json per snapshot)', () => {
    let old: string;
    beforeEach(async () => {
      old = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-snap-old-'));
    });
    afterEach(async () => {
      await cleanupRoot(old);
    });
    /** A snapshot dir as the older buildd left it: `fs/f` and its meta.json (an object, or raw text). */
    const oldSnapshot = async (id: string, meta: object | string): Promise<void> => {
      await fsp.mkdir(path.join(old, 'snapshots', id, 'fs'), { recursive: true });
      await fsp.writeFile(path.join(old, 'snapshots', id, 'fs', 'f'), id);
      await fsp.writeFile(path.join(old, 'snapshots', id, 'meta.json'), typeof meta === 'string' ? meta : JSON.stringify(meta));
    };
    const id = (n: number): string => n.toString(16).padStart(24, '0');
    const at = '2026-11-01T10:00:00.000Z';

    it('imports the committed snapshots once, drops damaged ones with those layered on them, and logs what was lost', async () => {
      const [base, child, grandchild, unrelated, wrongShape, active, linked] = [1, 2, 3, 4, 5, 6, 7].map(id) as [string, string, string, string, string, string, string];
      // as a disk or a hand would leave them: cut short, and valid JSON that is not our metadata
      await oldSnapshot(base, JSON.stringify({ id: base, kind: 'committed', createdAt: at }).slice(0, 20));
      await oldSnapshot(child, { id: child, parent: base, kind: 'committed', createdAt: at });
      await oldSnapshot(grandchild, { id: grandchild, parent: child, kind: 'committed', createdAt: at });
      await oldSnapshot(unrelated, { id: unrelated, kind: 'committed', createdAt: at });
      await oldSnapshot(wrongShape, { id: wrongShape, kind: 'frozen', createdAt: 'x' });
      await oldSnapshot(active, { id: active, parent: unrelated, kind: 'active', createdAt: at });
      await oldSnapshot(linked, { id: linked, parent: unrelated, kind: 'committed', createdAt: at, linkedFrom: ['local:ctx'] });

      const log = captureLogger();
      const s = await OverlaySnapshotter.open(old, { logger: log.logger });
      for (const gone of [base, child, grandchild, wrongShape, active]) {
        expect(await s.get(gone)).toBeUndefined();
        await expect(fsp.access(path.join(old, 'snapshots', gone))).rejects.toMatchObject({ code: 'ENOENT' });
      }
      expect(await s.get(unrelated)).toEqual({ id: unrelated, kind: 'committed', createdAt: at });
      expect(await s.get(linked)).toEqual({ id: linked, parent: unrelated, kind: 'committed', createdAt: at, linkedFrom: ['local:ctx'] });
      // the files moved into the database; the layers stay
      await expect(fsp.access(path.join(old, 'snapshots', unrelated, 'meta.json'))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await fsp.readFile(path.join(await s.upperDir(linked), 'f'), 'utf8')).toBe(linked);
      const warnings = log.at('warn');
      expect(warnings).toHaveLength(3);
      expect(warnings).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            snapshot: base,
            reason: expect.stringMatching(/^meta\.json is not JSON: /),
            msg: expect.stringMatching(new RegExp(`^Cannot load snapshot ${base}: its metadata is damaged \\(meta\\.json is not JSON: .+\\); deleting the snapshot and its layer$`)),
          }),
          expect.objectContaining({
            snapshot: wrongShape,
            reason: 'meta.json does not describe a snapshot: kind: Invalid enum value. Expected \'active\' | \'committed\', received \'frozen\'',
          }),
          {
            level: 'warn',
            time: expect.any(Number),
            pid: process.pid,
            hostname: expect.any(String),
            snapshots: [child, grandchild].sort(),
            missingParents: [base],
            msg: `Cannot keep snapshots ${[child, grandchild].sort().join(', ')}: they are layered on snapshots that are gone (${base}); deleting them`,
          },
        ]),
      );
      expect(log.at('info')).toEqual([expect.objectContaining({ snapshots: 2, msg: "moved the snapshots' metadata into the metadata database" })]);

      // the import is done once: a meta.json that turns up later is nobody's record
      await oldSnapshot(id(8), { id: id(8), kind: 'committed', createdAt: at });
      const again = captureLogger();
      const s2 = await OverlaySnapshotter.open(old, { logger: again.logger });
      expect(again.at('warn')).toEqual([]);
      expect((await s2.list()).map((i) => i.id).sort()).toEqual([unrelated, linked].sort());
      await expect(fsp.access(path.join(old, 'snapshots', id(8)))).rejects.toMatchObject({ code: 'ENOENT' });
    });

    it('refuses to open, deleting nothing, when a meta.json cannot be read (not damaged, just unreadable)', async () => {
      const kept = id(9);
      await oldSnapshot(kept, { id: kept, kind: 'committed', createdAt: at });
      // EISDIR stands for any read error that says nothing about the content (EMFILE, EIO...)
      const meta = path.join(old, 'snapshots', kept, 'meta.json');
      const saved = await fsp.readFile(meta);
      await fsp.rm(meta);
      await fsp.mkdir(meta);
      await expect(OverlaySnapshotter.open(old)).rejects.toMatchObject({
        code: 'internal',
        message: `Cannot open the snapshotter: ${meta} cannot be read: EISDIR`,
      });
      expect(await fsp.readFile(path.join(old, 'snapshots', kept, 'fs', 'f'), 'utf8')).toBe(kept);
      await fsp.rmdir(meta);
      await fsp.writeFile(meta, saved);
      const s = await OverlaySnapshotter.open(old);
      expect(await s.get(kept)).toMatchObject({ id: kept, kind: 'committed' });
    });
  });

  describe('its records in the metadata database', () => {
    let own: string;
    beforeEach(async () => {
      own = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-snap-db-'));
    });
    afterEach(async () => {
      await cleanupRoot(own);
    });
    const rows = (): Array<{ id: string; parent: string | null }> => {
      const meta = MetaDb.open(own);
      try {
        return meta.db.prepare('SELECT id, parent FROM snapshots ORDER BY id').all() as Array<{ id: string; parent: string | null }>;
      } finally {
        meta.close();
      }
    };

    it('writes what `within` records in the commit\'s transaction: both land, or neither', async () => {
      const s = await OverlaySnapshotter.open(own);
      const cache = await CacheStore.open(own);
      const ok = await s.prepare(undefined);
      const id = await s.commit(ok, { within: (snapshot) => cache.write({ key: 'k1', snapshot, createdAt: new Date().toISOString() }) });
      expect(await cache.get('k1')).toMatchObject({ key: 'k1', snapshot: id });
      expect(rows()).toEqual([{ id, parent: null }]);

      const failing = await s.prepare(id);
      await fsp.writeFile(path.join(await failing.mount(), 'f'), 'lost');
      await expect(
        s.commit(failing, {
          within: (snapshot) => {
            cache.write({ key: 'k2', snapshot, createdAt: new Date().toISOString() });
            throw new Error('the record cannot be written');
          },
        }),
      ).rejects.toThrow('the record cannot be written');
      // neither the snapshot's row nor the record: the snapshot is still active, and its release deletes it
      expect(await cache.get('k2')).toBeUndefined();
      expect(rows()).toEqual([{ id, parent: null }]);
      expect((await s.get(failing.id))?.kind).toBe('active');
      await failing.release();
      await expect(fsp.access(path.join(own, 'snapshots', failing.id))).rejects.toMatchObject({ code: 'ENOENT' });
      await s.remove(id);
      expect(rows()).toEqual([]);
    });

    it('at open, drops a row whose directory is gone (with what is layered on it) and a directory without a row', async () => {
      const s = await OverlaySnapshotter.open(own);
      const commitOn = async (parent: string | undefined): Promise<string> => s.commit(await s.prepare(parent));
      const base = await commitOn(undefined);
      const child = await commitOn(base);
      const kept = await commitOn(undefined);
      await fsp.rm(path.join(own, 'snapshots', base), { recursive: true });
      // what a removal cut short by a crash leaves: the row went first
      const stray = '0123456789abcdef01234567';
      await fsp.mkdir(path.join(own, 'snapshots', stray, 'fs'), { recursive: true });

      const log = captureLogger();
      const s2 = await OverlaySnapshotter.open(own, { logger: log.logger });
      expect((await s2.list()).map((i) => i.id)).toEqual([kept]);
      expect(rows()).toEqual([{ id: kept, parent: null }]);
      for (const gone of [child, stray]) await expect(fsp.access(path.join(own, 'snapshots', gone))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(log.at('warn')).toEqual([
        expect.objectContaining({ snapshots: [base], msg: `Cannot keep snapshots ${base}: their directories are gone; deleting their records` }),
        expect.objectContaining({ snapshots: [child], missingParents: [base] }),
      ]);
    });

    it('drops a snapshot whose row does not read, and says why', async () => {
      const s = await OverlaySnapshotter.open(own);
      const id = await s.commit(await s.prepare(undefined), { linkedFrom: ['local:ctx'] });
      const meta = MetaDb.open(own);
      meta.db.prepare('UPDATE snapshots SET linked_from = ? WHERE id = ?').run('["/etc"]', id);
      meta.close();
      const log = captureLogger();
      const s2 = await OverlaySnapshotter.open(own, { logger: log.logger });
      expect(await s2.get(id)).toBeUndefined();
      expect(rows()).toEqual([]);
      expect(log.at('warn')).toEqual([
        expect.objectContaining({ snapshot: id, msg: expect.stringMatching(new RegExp(`^Cannot load snapshot ${id}: its record is damaged \\(linked_from is not a list of link sources: .+\\); deleting the snapshot and its layer$`)) }),
      ]);
    });
  });

  it('mounts a long chain with relative lower dirs', async () => {
    const s = await OverlaySnapshotter.open(root);
    let parent: string | undefined;
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) {
      const a = await s.prepare(parent);
      await fsp.writeFile(path.join(await s.upperDir(a.id), `f${i}`), String(i));
      parent = await s.commit(a);
      ids.push(parent);
    }
    const view = await s.mountView(parent as string);
    try {
      expect((await fsp.readdir(view.path)).length).toBe(100);
      expect(await fsp.readFile(path.join(view.path, 'f0'), 'utf8')).toBe('0');
    } finally {
      await view.release();
    }
    for (const id of ids.reverse()) await s.remove(id);
    // 100 commits, each synced: seconds on a loaded disk
  }, 60_000);
});
