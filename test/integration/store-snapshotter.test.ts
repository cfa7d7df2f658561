import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
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

  it('deletes a snapshot with damaged metadata and those layered on it, and logs what was lost', async () => {
    const s1 = await OverlaySnapshotter.open(root);
    const commitOn = async (parent: string | undefined): Promise<string> => {
      const a = await s1.prepare(parent);
      await fsp.writeFile(path.join(await s1.upperDir(a.id), 'f'), a.id);
      return s1.commit(a);
    };
    const base = await commitOn(undefined);
    const child = await commitOn(base);
    const grandchild = await commitOn(child);
    const unrelated = await commitOn(undefined);
    const wrongShape = await commitOn(undefined);
    // as a disk or a hand would leave them: cut short, and valid JSON that is not our metadata
    const baseMeta = path.join(root, 'snapshots', base, 'meta.json');
    await fsp.writeFile(baseMeta, (await fsp.readFile(baseMeta, 'utf8')).slice(0, 20));
    await fsp.writeFile(path.join(root, 'snapshots', wrongShape, 'meta.json'), JSON.stringify({ id: wrongShape, kind: 'frozen', createdAt: 'x' }));

    const log = captureLogger();
    const s2 = await OverlaySnapshotter.open(root, { logger: log.logger });
    for (const id of [base, child, grandchild, wrongShape]) {
      expect(await s2.get(id)).toBeUndefined();
      await expect(fsp.access(path.join(root, 'snapshots', id))).rejects.toMatchObject({ code: 'ENOENT' });
    }
    expect(await s2.get(unrelated)).toMatchObject({ id: unrelated, kind: 'committed' });
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
    await s2.remove(unrelated);
  });

  it('refuses to open, deleting nothing, when a snapshot\'s metadata cannot be read (not damaged, just unreadable)', async () => {
    const s1 = await OverlaySnapshotter.open(root);
    const a = await s1.prepare(undefined);
    await fsp.writeFile(path.join(await s1.upperDir(a.id), 'f'), 'kept');
    const id = await s1.commit(a);
    // EISDIR stands for any read error that says nothing about the content (EMFILE, EIO...)
    const meta = path.join(root, 'snapshots', id, 'meta.json');
    const saved = await fsp.readFile(meta);
    await fsp.rm(meta);
    await fsp.mkdir(meta);
    try {
      await expect(OverlaySnapshotter.open(root)).rejects.toMatchObject({
        code: 'internal',
        message: `Cannot open the snapshotter: ${meta} cannot be read: EISDIR`,
      });
      expect(await fsp.readFile(path.join(root, 'snapshots', id, 'fs', 'f'), 'utf8')).toBe('kept');
    } finally {
      await fsp.rmdir(meta);
      await fsp.writeFile(meta, saved);
    }
    const s2 = await OverlaySnapshotter.open(root);
    expect(await s2.get(id)).toMatchObject({ id, kind: 'committed' });
    await s2.remove(id);
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
