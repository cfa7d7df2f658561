import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setAttribute } from '@napi-rs/xattr';
import { LocalContentStore } from '../../store/content-store';
import { diffToLayer } from '../../store/layer-diff';
import { NativeSnapshotter } from '../../store/native-snapshotter';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import type { Snapshotter } from '../../store/snapshotter';
import { createTarExtract } from '../../store/tar-xattrs';
import { readXattrs } from '../../store/xattrs';
import { cleanupRoot, mountsUnder } from '../helpers/store-mounts';

/**
 * The copying snapshotter: its layer diffs (computed at commit, parent tree against child
 * tree) in overlay's upper-dir format, checked entry by entry and against what overlayfs
 * records for the same changes; its lifecycle and restart safety. Root: whiteouts are device
 * nodes and opaque markers trusted.* attributes.
 */
jest.setTimeout(60_000);

let root: string;
let content: LocalContentStore;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-native-'));
  content = await LocalContentStore.open(path.join(root, 'content'));
});

afterAll(async () => {
  const left = await mountsUnder(root);
  await cleanupRoot(root);
  expect(left).toEqual([]);
});

/** Every entry of `dir` as `path → description`: type, mode, owner, content or target, rdev, overlay markers. */
async function table(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(dir, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(dir, r);
      const st = await fsp.lstat(abs);
      const marks = [...(await readXattrs(abs, (n) => !n.startsWith('security.')))].map(([k, v]) => ` ${k}=${v.toString()}`).join('');
      let what: string;
      if (st.isDirectory()) what = 'dir';
      else if (st.isSymbolicLink()) what = `symlink->${await fsp.readlink(abs)}`;
      else if (st.isCharacterDevice()) what = `char ${st.rdev}`;
      else if (st.isFIFO()) what = 'fifo';
      else what = `file:${await fsp.readFile(abs, 'utf8')}${st.nlink > 1 ? ` links=${st.nlink}` : ''}`;
      out[r] = `${what} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}${marks}`;
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

/** A base layer, then one layer of every kind of change; returns the child's id. */
async function layerOfChanges(s: Snapshotter): Promise<{ base: string; child: string }> {
  const a = await s.prepare(undefined);
  const m0 = await a.mount();
  await fsp.mkdir(path.join(m0, 'etc'));
  await fsp.writeFile(path.join(m0, 'etc', 'group'), 'root:x:0:\n');
  await fsp.writeFile(path.join(m0, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await fsp.writeFile(path.join(m0, 'etc', 'same'), 'same\n');
  await fsp.writeFile(path.join(m0, 'mode-only'), 'm\n');
  await fsp.writeFile(path.join(m0, 'xattr-only'), 'x\n');
  await fsp.writeFile(path.join(m0, 'owner-only'), 'o\n');
  await fsp.mkdir(path.join(m0, 'var', 'tmp'), { recursive: true });
  await fsp.writeFile(path.join(m0, 'var', 'tmp', 'old'), 'old\n');
  await fsp.mkdir(path.join(m0, 'keep', 'deep'), { recursive: true });
  await fsp.writeFile(path.join(m0, 'keep', 'deep', 'untouched'), 'u\n');
  await fsp.writeFile(path.join(m0, 'keep', 'deep', 'edited'), 'before\n');
  await fsp.symlink('etc/group', path.join(m0, 'link'));
  await fsp.writeFile(path.join(m0, 'file-to-dir'), 'f\n');
  const base = await s.commit(a);

  const b = await s.prepare(base);
  try {
    const m = await b.mount();
    await fsp.rm(path.join(m, 'etc', 'group'));
    await fsp.writeFile(path.join(m, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\nu:x:1:1::/:/bin/sh\n');
    await fsp.chmod(path.join(m, 'mode-only'), 0o600);
    await setAttribute(path.join(m, 'xattr-only'), 'user.note', Buffer.from('hi'));
    await fsp.chown(path.join(m, 'owner-only'), 4242, 4343);
    await fsp.rm(path.join(m, 'var'), { recursive: true });
    await fsp.mkdir(path.join(m, 'var'));
    await fsp.writeFile(path.join(m, 'var', 'fresh'), 'new\n');
    await fsp.writeFile(path.join(m, 'keep', 'deep', 'edited'), 'after\n');
    await fsp.rm(path.join(m, 'link'));
    await fsp.symlink('etc/passwd', path.join(m, 'link'));
    await fsp.symlink('keep', path.join(m, 'new-link'));
    await fsp.writeFile(path.join(m, 'added'), 'added\n');
    await fsp.link(path.join(m, 'added'), path.join(m, 'added-hardlink'));
    await fsp.rm(path.join(m, 'file-to-dir'));
    await fsp.mkdir(path.join(m, 'file-to-dir'));
    return { base, child: await s.commit(b) };
  } finally {
    await b.release();
  }
}

/** The entries of a layer blob as `name type mode uid:gid [link|sha]`, in tar order. */
async function layerEntries(digest: string): Promise<string[]> {
  const out: string[] = [];
  const extract = createTarExtract();
  const done = (async () => {
    for await (const e of extract) {
      const chunks: Buffer[] = [];
      for await (const c of e as AsyncIterable<Buffer>) chunks.push(c);
      const h = e.header;
      const what = h.type === 'file' ? createHash('sha256').update(Buffer.concat(chunks)).digest('hex').slice(0, 12) : (h.linkname ?? '');
      out.push(`${h.name} ${h.type} ${(h.mode ?? 0).toString(8)} ${h.uid}:${h.gid} ${what}`);
    }
  })();
  extract.end(execFileSync('gzip', ['-dc'], { input: await fsp.readFile(content.blobPath(digest)) }));
  await done;
  return out;
}

describe('NativeSnapshotter layer diff', () => {
  let snaps: NativeSnapshotter;

  beforeAll(async () => {
    snaps = await NativeSnapshotter.open(path.join(root, 'native'));
  });

  it('records adds, changes, deletions as whiteouts, a recreated dir as opaque, symlinks, hard links, mode/owner/xattr-only changes, and nothing unchanged', async () => {
    const { base, child } = await layerOfChanges(snaps);
    // a base layer is its own diff
    expect(await snaps.upperDir(base)).toBe(path.join(root, 'native', 'snapshots-native', base, 'fs'));
    expect(await table(await snaps.upperDir(child))).toEqual({
      added: 'file:added\n links=2 644 0:0',
      'added-hardlink': 'file:added\n links=2 644 0:0',
      etc: 'dir 755 0:0',
      'etc/group': 'char 0 0 0:0',
      'etc/passwd': 'file:root:x:0:0::/root:/bin/sh\nu:x:1:1::/:/bin/sh\n 644 0:0',
      'file-to-dir': 'dir 755 0:0 trusted.overlay.opaque=y',
      keep: 'dir 755 0:0',
      'keep/deep': 'dir 755 0:0',
      'keep/deep/edited': 'file:after\n 644 0:0',
      link: 'symlink->etc/passwd 777 0:0',
      'mode-only': 'file:m\n 600 0:0',
      'new-link': 'symlink->keep 777 0:0',
      'owner-only': 'file:o\n 644 4242:4343',
      var: 'dir 755 0:0 trusted.overlay.opaque=y',
      'var/fresh': 'file:new\n 644 0:0',
      'xattr-only': 'file:x\n 644 0:0 user.note=hi',
    });
  });

  it('gives the same layer tar as overlayfs for the same changes', async () => {
    const overlay = await OverlaySnapshotter.open(path.join(root, 'overlay'));
    const ids = [await layerOfChanges(snaps), await layerOfChanges(overlay)];
    const [native, reference] = await Promise.all(
      [snaps, overlay].map(async (s, i) => layerEntries((await diffToLayer(s, (ids[i] as { child: string }).child, content)).digest)),
    );
    expect(native).toEqual(reference);
    expect(native).toContain('var/.wh..wh..opq file 0 0:0 e3b0c44298fc');
    expect(native).toContain('etc/.wh.group file 0 0:0 e3b0c44298fc');
  });
});

describe('NativeSnapshotter with user.overlay.* markers (rootless)', () => {
  it('marks a recreated dir with user.overlay.opaque and never carries a marker the build itself set', async () => {
    const s = await NativeSnapshotter.open(path.join(root, 'user-ns'), { overlayXattrs: 'user' });
    expect(s.overlayXattrs).toBe('user');
    const a = await s.prepare(undefined);
    await fsp.mkdir(path.join(await a.mount(), 'd'));
    await fsp.writeFile(path.join(await a.mount(), 'd', 'old'), 'o');
    const aid = await s.commit(a);
    const b = await s.prepare(aid);
    try {
      const m = await b.mount();
      await fsp.rm(path.join(m, 'd'), { recursive: true });
      await fsp.mkdir(path.join(m, 'd'));
      // as a hostile layer's SCHILY.xattr.user.overlay.opaque would
      await fsp.mkdir(path.join(m, 'forged'));
      await setAttribute(path.join(m, 'forged'), 'user.overlay.opaque', Buffer.from('y'));
      const bid = await s.commit(b);
      expect(await table(await s.upperDir(bid))).toEqual({ d: 'dir 755 0:0 user.overlay.opaque=y', forged: 'dir 755 0:0' });
    } finally {
      await b.release();
    }
  });
});

describe('NativeSnapshotter change detection', () => {
  it('sees a same-size rewrite made right after prepare whose mtime was set back (ctime moved, even on a coarse clock)', async () => {
    const s = await NativeSnapshotter.open(path.join(root, 'racy'));
    const a = await s.prepare(undefined);
    await fsp.writeFile(path.join(await a.mount(), 'f'), 'aaaa');
    await fsp.utimes(path.join(await a.mount(), 'f'), 1000, 1000);
    const aid = await s.commit(a);
    for (let i = 0; i < 5; i++) {
      const b = await s.prepare(aid);
      try {
        const f = path.join(await b.mount(), 'f');
        await fsp.writeFile(f, 'bbbb');
        await fsp.utimes(f, 1000, 1000);
        const bid = await s.commit(b);
        expect(await table(await s.upperDir(bid))).toEqual({ f: 'file:bbbb 644 0:0' });
        await s.remove(bid);
      } finally {
        await b.release();
      }
    }
  });
});

describe('NativeSnapshotter lifecycle', () => {
  it('copies the parent tree with owners, modes, times, attributes, device nodes and hard links', async () => {
    const s = await NativeSnapshotter.open(path.join(root, 'copy'));
    const a = await s.prepare(undefined);
    const m0 = await a.mount();
    await fsp.writeFile(path.join(m0, 'suid'), '#!/bin/sh\n');
    await fsp.chown(path.join(m0, 'suid'), 7, 8);
    await fsp.chmod(path.join(m0, 'suid'), 0o4755);
    await setAttribute(path.join(m0, 'suid'), 'user.k', Buffer.from('v'));
    await fsp.utimes(path.join(m0, 'suid'), 1000, 2000);
    await fsp.link(path.join(m0, 'suid'), path.join(m0, 'suid-link'));
    execFileSync('mknod', [path.join(m0, 'null'), 'c', '1', '3']);
    execFileSync('mknod', [path.join(m0, 'pipe'), 'p']);
    await fsp.mkdir(path.join(m0, 'd'), { mode: 0o700 });
    await fsp.utimes(path.join(m0, 'd'), 3000, 4000);
    const aid = await s.commit(a);
    const b = await s.prepare(aid);
    try {
      const m = await b.mount();
      expect(await table(m)).toEqual(await table(m0));
      const [src, copy] = await Promise.all([fsp.lstat(path.join(m0, 'suid')), fsp.lstat(path.join(m, 'suid'))]);
      expect({ mtime: copy.mtimeMs, ino: copy.ino === src.ino }).toEqual({ mtime: 2000_000, ino: false });
      expect((await fsp.lstat(path.join(m, 'suid-link'))).ino).toBe(copy.ino);
      expect((await fsp.lstat(path.join(m, 'null'))).rdev).toBe((await fsp.lstat(path.join(m0, 'null'))).rdev);
      expect((await fsp.lstat(path.join(m, 'pipe'))).isFIFO()).toBe(true);
      expect((await fsp.lstat(path.join(m, 'd'))).mtimeMs).toBe(4000_000);
      // nothing changed: an empty layer
      const bid = await s.commit(b);
      expect(await fsp.readdir(await s.upperDir(bid))).toEqual([]);
    } finally {
      await b.release();
    }
  });

  it('keeps committed snapshots across a reopen, drops active ones, gives read-only views and refuses removals in use', async () => {
    const dir = path.join(root, 'life');
    const s1 = await NativeSnapshotter.open(dir);
    const a = await s1.prepare(undefined);
    await fsp.writeFile(path.join(await a.mount(), 'kept.txt'), 'kept');
    const aid = await s1.commit(a);
    const left = await s1.prepare(aid);
    await fsp.writeFile(path.join(await left.mount(), 'lost.txt'), 'lost');

    // a view a killed daemon left mounted
    const stale = await s1.mountView(aid);
    expect(await mountsUnder(dir)).toEqual([stale.path]);

    const s2 = await NativeSnapshotter.open(dir);
    expect(await mountsUnder(dir)).toEqual([]);
    expect(await s2.get(left.id)).toBeUndefined();
    await expect(fsp.access(path.join(dir, 'snapshots-native', left.id))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await s2.get(aid))?.kind).toBe('committed');
    const view = await s2.mountView(aid);
    try {
      expect(await fsp.readFile(path.join(view.path, 'kept.txt'), 'utf8')).toBe('kept');
      await expect(fsp.writeFile(path.join(view.path, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
      await expect(s2.remove(aid)).rejects.toMatchObject({ code: 'failed-precondition', message: `Cannot remove snapshot ${aid}: a view of it is mounted` });
    } finally {
      await view.release();
      await view.release();
    }
    const b = await s2.prepare(aid);
    const bid = await s2.commit(b);
    await expect(s2.remove(aid)).rejects.toMatchObject({ code: 'failed-precondition', message: `Cannot remove snapshot ${aid}: snapshot ${bid} is layered on it` });
    expect(await s2.chain(bid)).toEqual([aid, bid]);
    await s2.remove(bid);
    await s2.remove(aid);
    expect(await fsp.readdir(path.join(dir, 'snapshots-native'))).toEqual(['views']);
  });
});

describe('NativeSnapshotter where whiteouts cannot be made', () => {
  it('fails the commit of a deletion with a clear error on a root that is an overlay mount (mknod of 0:0 refused)', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-native-on-overlay-'));
    for (const d of ['l', 'u', 'w', 'm']) await fsp.mkdir(path.join(tmp, d));
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${tmp}/l,upperdir=${tmp}/u,workdir=${tmp}/w`, path.join(tmp, 'm')]);
    let s: NativeSnapshotter | undefined;
    try {
      s = await NativeSnapshotter.open(path.join(tmp, 'm', 'root'));
      const a = await s.prepare(undefined);
      await fsp.writeFile(path.join(await a.mount(), 'gone'), 'g');
      const aid = await s.commit(a);
      const b = await s.prepare(aid);
      try {
        await fsp.rm(path.join(await b.mount(), 'gone'));
        await expect(s.commit(b)).rejects.toMatchObject({
          code: 'failed-precondition',
          message: expect.stringMatching(/^Cannot record the deletion of \/gone in the layer: creating its whiteout \(a 0:0 character device\) was refused \(.*Operation not permitted\); the native snapshotter needs mknod/),
        });
      } finally {
        await b.release();
      }
    } finally {
      // its database is on the mount
      s?.close();
      execFileSync('umount', [path.join(tmp, 'm')]);
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});
