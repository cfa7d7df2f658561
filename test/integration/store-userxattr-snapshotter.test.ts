import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalContentStore } from '../../store/content-store';
import { diffToLayer } from '../../store/layer-diff';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { createTarExtract } from '../../store/tar-xattrs';
import { readXattrs } from '../../store/xattrs';
import { cleanupRoot, mountsUnder } from '../helpers/store-mounts';

/**
 * The snapshotter of buildd --rootless: overlay mounted with `userxattr` (what a user
 * namespace requires) keeps opaque markers in user.overlay.opaque, and a layer diff of it
 * reads them from there. Run as root here: the mount option and the markers are the same in
 * the initial namespace, so the store's side is tested without a user namespace.
 */
describe('overlay snapshotter with user.overlay.* markers (userxattr)', () => {
  let root: string;
  let snaps: OverlaySnapshotter;
  let content: LocalContentStore;

  beforeAll(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-userxattr-'));
    snaps = await OverlaySnapshotter.open(root, { overlayXattrs: 'user' });
    content = await LocalContentStore.open(path.join(root, 'content'));
  });

  afterAll(async () => {
    const left = await mountsUnder(root);
    await cleanupRoot(root);
    expect(left).toEqual([]);
  });

  it('marks a recreated directory opaque with user.overlay.opaque and exports it as .wh..wh..opq, a deleted file as a whiteout', async () => {
    expect(snaps.overlayXattrs).toBe('user');
    const base = await snaps.prepare(undefined);
    const m0 = await base.mount();
    await fsp.mkdir(path.join(m0, 'opq'));
    await fsp.writeFile(path.join(m0, 'opq', 'old'), 'old');
    await fsp.writeFile(path.join(m0, 'gone'), 'g');
    const baseId = await snaps.commit(base);

    const child = await snaps.prepare(baseId);
    let id: string;
    try {
      const m = await child.mount();
      await fsp.rm(path.join(m, 'gone'));
      await fsp.rm(path.join(m, 'opq'), { recursive: true });
      await fsp.mkdir(path.join(m, 'opq'));
      await fsp.writeFile(path.join(m, 'opq', 'new'), 'new');
      id = await snaps.commit(child);
    } finally {
      await child.release();
    }
    const marks = await readXattrs(path.join(await snaps.upperDir(id), 'opq'), (n) => n.includes('.overlay.'));
    expect(Object.fromEntries([...marks].map(([k, v]) => [k, v.toString()]))).toEqual({ 'user.overlay.opaque': 'y' });

    const layer = await diffToLayer(snaps, id, content);
    const names: string[] = [];
    const extract = createTarExtract();
    const done = (async () => {
      for await (const e of extract) {
        names.push(e.header.name);
        e.resume();
      }
    })();
    extract.end(execFileSync('gzip', ['-dc'], { input: await fsp.readFile(content.blobPath(layer.digest)) }));
    await done;
    expect(names).toEqual(['.wh.gone', 'opq/', 'opq/.wh..wh..opq', 'opq/new']);
  });
});

describe('overlay snapshotter with userxattr where overlay cannot mount', () => {
  it('fails open with failed-precondition, saying why', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-userxattr-refused-'));
    // ramfs keeps no extended attributes: overlay mounts on it all the same, but could not
    // record an opaque directory
    await fsp.mkdir(path.join(tmp, 'merged'));
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', path.join(tmp, 'merged')]);
    try {
      await expect(OverlaySnapshotter.open(path.join(tmp, 'merged', 'root'), { overlayXattrs: 'user' })).rejects.toMatchObject({
        code: 'failed-precondition',
        message: expect.stringMatching(
          /^Cannot use overlayfs in this user namespace \(mount option userxattr needs Linux 5\.11 or later and a file system that keeps user\.\* attributes\): Cannot read overlay opaque markers in .+: this process cannot write user\.\* attributes \(.+\); buildd --rootless needs a file system that keeps user\.\* attributes .+$/,
        ),
      });
      // the probe's scratch dirs are gone
      expect(await fsp.readdir(path.join(tmp, 'merged', 'root', 'snapshots', 'views'))).toEqual([]);
    } finally {
      execFileSync('umount', [path.join(tmp, 'merged')]);
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});

