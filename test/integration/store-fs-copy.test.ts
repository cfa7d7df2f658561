import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getAttribute, setAttribute } from '@napi-rs/xattr';
import type { CopyAction } from '../../solver/op';
import { copyAction, mkdirAction } from '../../store/fs-copy';
import { encodeTarHeader, padding, TAR_END } from '../../store/tar-header';
import { readXattrs } from '../../store/xattrs';

/**
 * The expected tables are what Docker 20.10's BuildKit produced for the same Dockerfile and
 * context (conformance reference builder, flattened with imgdiff.py): file type, mode, owner.
 */
let tmp: string;
let ctx: string;
let dest: string;

async function write(p: string, body: string, mode: number): Promise<void> {
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, body);
  await fsp.chmod(p, mode);
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-copy-'));
  ctx = path.join(tmp, 'ctx');
  await write(path.join(ctx, 'one.txt'), 'one\n', 0o444);
  await write(path.join(ctx, 'two.txt'), 'two\n', 0o640);
  await write(path.join(ctx, 'conf/app.ini'), 'a\n', 0o755);
  await write(path.join(ctx, 'conf/sub/deep.ini'), 'd\n', 0o644);
  await fsp.chmod(path.join(ctx, 'conf/sub'), 0o700);
  await fsp.chmod(path.join(ctx, 'conf'), 0o751);
  for (const p of ['conf', 'conf/app.ini', 'conf/sub', 'conf/sub/deep.ini']) await fsp.chown(path.join(ctx, p), 1234, 5678);
  await write(path.join(ctx, 'tree/f'), 'f\n', 0o4755);
  await fsp.mkdir(path.join(ctx, 'tree/d'), { mode: 0o755 });
  await fsp.link(path.join(ctx, 'tree/f'), path.join(ctx, 'tree/hard'));
  await fsp.symlink('f', path.join(ctx, 'tree/rel'));
  await fsp.symlink('/etc/passwd', path.join(ctx, 'tree/abs'));
  await fsp.symlink('d', path.join(ctx, 'tree/dlink'));
  await fsp.symlink('/etc/passwd', path.join(ctx, 'link-passwd'));
  await fsp.symlink('conf', path.join(ctx, 'dirlink'));
  await fsp.symlink('one.txt', path.join(ctx, 'filelink'));
  await fsp.mkdir(path.join(ctx, 'empty'));
  await fsp.chmod(path.join(ctx, 'empty'), 0o711);
  await write(path.join(ctx, '.hid'), 'h\n', 0o644);

  dest = path.join(tmp, 'dest');
  await write(path.join(dest, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n', 0o644);
  await write(path.join(dest, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n', 0o644);
  await fsp.mkdir(path.join(dest, 'tmp'));
  await fsp.chmod(path.join(dest, 'tmp'), 0o1777);
  await fsp.mkdir(path.join(dest, 'usr'));
  await fsp.mkdir(path.join(dest, 'ex/sub'), { recursive: true });
  await fsp.mkdir(path.join(dest, 'ex/target'));
  await fsp.chmod(path.join(dest, 'ex'), 0o700);
  await fsp.chown(path.join(dest, 'ex'), 9, 9);
  await write(path.join(dest, 'ex/one.txt'), 'old\n', 0o600);
  await fsp.symlink('/ex/target', path.join(dest, 'symdest'));
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

function copy(srcPaths: string[], to: string, extra: Partial<CopyAction> = {}): Promise<void> {
  return copyAction({ type: 'copy', src: 0, srcPaths, dest: to, ...extra }, ctx, dest);
}

async function table(prefixes: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(dest, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(path.join(dest, r));
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
      const mode = st.isSymbolicLink() ? 0o777 : st.mode & 0o7777;
      if (prefixes.some((p) => r === p || r.startsWith(p + '/'))) {
        out[r] = `${type} ${mode.toString(8)} ${st.uid}:${st.gid}` + (st.isSymbolicLink() ? ` -> ${await fsp.readlink(path.join(dest, r))}` : '');
      }
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

describe('copyAction and mkdirAction, as BuildKit COPY and WORKDIR', () => {
  it('copies files, dirs, globs, symlinks and hard links with BuildKit modes and owners', async () => {
    await copy(['one.txt'], '/one');
    await copy(['one.txt', 'two.txt'], '/both/');
    await copy(['*.txt'], '/glob/');
    await copy(['conf'], '/etc/app');
    await copy(['conf'], '/owned/', { chown: { user: '10', group: '20' } });
    await copy(['one.txt'], '/a/b/c/one.txt', { chown: { user: '10', group: '20' } });
    await copy(['one.txt', 'two.txt'], '/named/x/', { chown: { user: 'nobody', group: 'nogroup' } });
    await copy(['one.txt'], '/nobodyonly', { chown: { user: 'nobody' } });
    await copy(['one.txt'], '/numericonly', { chown: { user: '3001' } });
    await copy(['one.txt'], '/private/one.txt', { chmod: 0o700 });
    await copy(['conf'], '/chmoddir/', { chmod: 0o750 });
    await copy(['conf'], '/chmodchown/p/', { chmod: 0o750, chown: { user: '7', group: '8' } });
    await copy(['tree'], '/tree/');
    await copy(['dirlink'], '/dl/');
    await copy(['filelink'], '/fl');
    await copy(['conf/sub'], '/deep/x/y/');
    await copy(['one.txt'], '/tmp');
    await copy(['c?nf/*.ini'], '/globdir/');
    await copy(['c[o]nf'], '/bracket');
    await copy(['empty'], '/emptydir');
    await copy(['empty'], '/emptyown', { chown: { user: '3', group: '4' } });
    await copy(['conf/'], '/slashsrc');
    await copy(['one.txt'], '/etc/');
    await copy(['one.txt'], '/usr/', { chown: { user: '5', group: '6' } });
    await mkdirAction({ type: 'mkdir', path: '/work', mode: 0o755, makeParents: true }, dest);
    await copy(['two.txt'], '/work/');
    await copy(['two.txt'], '/work/rel/sub/');

    expect(await table(['a', 'both', 'bracket', 'chmodchown', 'chmoddir', 'deep', 'dl', 'emptydir', 'emptyown', 'etc/app', 'etc/one.txt', 'fl', 'glob', 'globdir', 'named', 'nobodyonly', 'numericonly', 'one', 'owned', 'private', 'slashsrc', 'tmp/one.txt', 'tree', 'usr/one.txt', 'work'])).toEqual({
      'a': 'dir 755 10:20',
      'a/b': 'dir 755 10:20',
      'a/b/c': 'dir 755 10:20',
      'a/b/c/one.txt': 'file 444 10:20',
      'both': 'dir 755 0:0',
      'both/one.txt': 'file 444 0:0',
      'both/two.txt': 'file 640 0:0',
      'bracket': 'dir 755 0:0',
      'bracket/app.ini': 'file 755 0:0',
      'bracket/sub': 'dir 700 0:0',
      'bracket/sub/deep.ini': 'file 644 0:0',
      'chmodchown': 'dir 755 7:8',
      'chmodchown/p': 'dir 755 7:8',
      'chmodchown/p/app.ini': 'file 750 7:8',
      'chmodchown/p/sub': 'dir 750 7:8',
      'chmodchown/p/sub/deep.ini': 'file 750 7:8',
      'chmoddir': 'dir 755 0:0',
      'chmoddir/app.ini': 'file 750 0:0',
      'chmoddir/sub': 'dir 750 0:0',
      'chmoddir/sub/deep.ini': 'file 750 0:0',
      'deep': 'dir 755 0:0',
      'deep/x': 'dir 755 0:0',
      'deep/x/y': 'dir 755 0:0',
      'deep/x/y/deep.ini': 'file 644 0:0',
      'dl': 'dir 755 0:0',
      'dl/app.ini': 'file 755 0:0',
      'dl/sub': 'dir 700 0:0',
      'dl/sub/deep.ini': 'file 644 0:0',
      'emptydir': 'dir 755 0:0',
      'emptyown': 'dir 755 3:4',
      'etc/app': 'dir 755 0:0',
      'etc/app/app.ini': 'file 755 0:0',
      'etc/app/sub': 'dir 700 0:0',
      'etc/app/sub/deep.ini': 'file 644 0:0',
      'etc/one.txt': 'file 444 0:0',
      'fl': 'file 444 0:0',
      'glob': 'dir 755 0:0',
      'glob/one.txt': 'file 444 0:0',
      'glob/two.txt': 'file 640 0:0',
      'globdir': 'dir 755 0:0',
      'globdir/app.ini': 'file 755 0:0',
      'named': 'dir 755 65534:65534',
      'named/x': 'dir 755 65534:65534',
      'named/x/one.txt': 'file 444 65534:65534',
      'named/x/two.txt': 'file 640 65534:65534',
      'nobodyonly': 'file 444 65534:65534',
      // a numeric user without a group: gid = uid, as BuildKit's chown (verified by conformance case c28)
      'numericonly': 'file 444 3001:3001',
      'one': 'file 444 0:0',
      'owned': 'dir 755 10:20',
      'owned/app.ini': 'file 755 10:20',
      'owned/sub': 'dir 700 10:20',
      'owned/sub/deep.ini': 'file 644 10:20',
      'private': 'dir 755 0:0',
      'private/one.txt': 'file 700 0:0',
      'slashsrc': 'dir 755 0:0',
      'slashsrc/app.ini': 'file 755 0:0',
      'slashsrc/sub': 'dir 700 0:0',
      'slashsrc/sub/deep.ini': 'file 644 0:0',
      'tmp/one.txt': 'file 444 0:0',
      'tree': 'dir 755 0:0',
      'tree/abs': 'symlink 777 0:0 -> /etc/passwd',
      'tree/d': 'dir 755 0:0',
      'tree/dlink': 'symlink 777 0:0 -> d',
      'tree/f': 'file 4755 0:0',
      'tree/hard': 'file 4755 0:0',
      'tree/rel': 'symlink 777 0:0 -> f',
      'usr/one.txt': 'file 444 5:6',
      'work': 'dir 755 0:0',
      'work/rel': 'dir 755 0:0',
      'work/rel/sub': 'dir 755 0:0',
      'work/rel/sub/two.txt': 'file 640 0:0',
      'work/two.txt': 'file 640 0:0',
    });
    const f = await fsp.stat(path.join(dest, 'tree/f'));
    expect((await fsp.stat(path.join(dest, 'tree/hard'))).ino).toBe(f.ino);
    expect(await fsp.readFile(path.join(dest, 'one'), 'utf8')).toBe('one\n');
    // Unchanged: existing directories a COPY goes into.
    expect(await table(['tmp', 'usr', 'etc'])).toMatchObject({ 'tmp': 'dir 1777 0:0', 'usr': 'dir 755 0:0', 'etc': 'dir 755 0:0' });
  });

  it('copies into existing dirs and through a destination symlink, keeping the existing dir', async () => {
    await copy(['conf'], '/ex/', { chown: { user: '3', group: '4' } });
    await copy(['one.txt'], '/ex/', { chown: { user: '3', group: '4' }, chmod: 0o640 });
    await copy(['empty'], '/ex/sub', { chown: { user: '3', group: '4' } });
    await copy(['one.txt'], '/symdest/', { chown: { user: '3', group: '4' } });
    await copy(['one.txt'], '/symdest/y');
    await copy(['conf'], '/ex2/n1/', { chown: { user: '3', group: '4' } });
    await copy(['.*'], '/dots/');
    expect(await table(['ex', 'ex2', 'symdest', 'dots'])).toEqual({
      'dots': 'dir 755 0:0',
      'dots/.hid': 'file 644 0:0',
      'ex': 'dir 700 9:9',
      'ex/app.ini': 'file 755 3:4',
      'ex/one.txt': 'file 640 3:4',
      'ex/sub': 'dir 700 3:4',
      'ex/sub/deep.ini': 'file 644 3:4',
      'ex/target': 'dir 755 0:0',
      'ex/target/one.txt': 'file 444 3:4',
      'ex/target/y': 'file 444 0:0',
      'ex2': 'dir 755 3:4',
      'ex2/n1': 'dir 755 3:4',
      'ex2/n1/app.ini': 'file 755 3:4',
      'ex2/n1/sub': 'dir 700 3:4',
      'ex2/n1/sub/deep.ini': 'file 644 3:4',
      'symdest': 'symlink 777 0:0 -> /ex/target',
    });
  });

  it('resolves a symlinked source inside the context, never on the host', async () => {
    // link-passwd -> /etc/passwd is looked up as <context>/etc/passwd: BuildKit says not found.
    await expect(copy(['link-passwd'], '/lp')).rejects.toMatchObject({ code: 'not-found' });
    await expect(fsp.lstat(path.join(dest, 'lp'))).rejects.toMatchObject({ code: 'ENOENT' });
    // Inside a copied tree it stays a symlink; the host file's content is never copied.
    expect(await fsp.readlink(path.join(dest, 'tree/abs'))).toBe('/etc/passwd');
  });

  it('fails on a missing plain path and copies nothing for a glob that matches nothing', async () => {
    await expect(copy(['missing.txt'], '/m/')).rejects.toThrow('Cannot copy "missing.txt": not found in the source');
    await copy(['nomatch*.txt'], '/nomatch/');
    await expect(fsp.lstat(path.join(dest, 'nomatch'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects an unknown --chown user', async () => {
    await expect(copy(['one.txt'], '/u', { chown: { user: 'nosuchuser' } })).rejects.toThrow(/no such user/);
  });

  it('creates directories with mkdir, with and without parents', async () => {
    await mkdirAction({ type: 'mkdir', path: '/m1/m2/m3', mode: 0o750, makeParents: true, chown: { user: 'nobody' } }, dest);
    expect(await table(['m1'])).toEqual({ 'm1': 'dir 750 65534:65534', 'm1/m2': 'dir 750 65534:65534', 'm1/m2/m3': 'dir 750 65534:65534' });
    await expect(mkdirAction({ type: 'mkdir', path: '/n1/n2', mode: 0o755, makeParents: false }, dest)).rejects.toMatchObject({ code: 'not-found' });
    await mkdirAction({ type: 'mkdir', path: '/m1', mode: 0o700, makeParents: false }, dest);
    expect((await table(['m1']))['m1']).toBe('dir 750 65534:65534');
  });
});

describe('extended attributes through COPY, as BuildKit (fsutil) copies them', () => {
  /** v2 file capability (cap_setuid + cap_net_raw, effective): binary, bytes >= 0x80. */
  const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const both = new Map([['security.capability', CAP], ['user.note', Buffer.from('hello')]]);
  let src: string;
  let hostTarget: string;

  beforeAll(async () => {
    // A stage's filesystem: files with a capability and a user.* attribute, in a tree too.
    src = path.join(tmp, 'xsrc');
    await write(path.join(src, 'ping'), 'p', 0o755);
    await write(path.join(src, 'dir/inner'), 'i', 0o755);
    for (const f of ['ping', 'dir/inner']) {
      await setAttribute(path.join(src, f), 'security.capability', CAP);
      await setAttribute(path.join(src, f), 'user.note', 'hello');
    }
    await fsp.mkdir(path.join(src, 'dir/sub'));
    await setAttribute(path.join(src, 'dir/sub'), 'user.dir', 'd');
    // A symlink to a host file with attributes: the copy is a symlink with none of them.
    hostTarget = path.join(tmp, 'xhost');
    await write(hostTarget, 'h', 0o644);
    await setAttribute(hostTarget, 'user.host', 'h');
    await fsp.symlink(hostTarget, path.join(src, 'dir/to-host'));
  });

  function copyFrom(srcPaths: string[], to: string, extra: Partial<CopyAction> = {}): Promise<void> {
    return copyAction({ type: 'copy', src: 0, srcPaths, dest: to, ...extra }, src, dest);
  }

  it('keeps them on files and directories, with --chown (set after the owner) and --chmod, and with --link', async () => {
    await copyFrom(['ping'], '/x/copied');
    await copyFrom(['ping'], '/x/chowned', { chown: { user: '1', group: '1' } });
    await copyFrom(['ping'], '/x/chmodded', { chmod: 0o700 });
    await copyFrom(['dir'], '/x/dir');
    await copyFrom(['ping'], '/x/linked', { link: true });
    for (const f of ['copied', 'chowned', 'chmodded', 'dir/inner', 'linked']) {
      expect([f, await readXattrs(path.join(dest, 'x', f))]).toEqual([f, both]);
    }
    expect((await fsp.stat(path.join(dest, 'x/chowned'))).uid).toBe(1);
    expect(await readXattrs(path.join(dest, 'x/dir/sub'))).toEqual(new Map([['user.dir', Buffer.from('d')]]));
    expect(await readXattrs(path.join(dest, 'x/dir/to-host'))).toEqual(new Map());
    expect(await readXattrs(hostTarget)).toEqual(new Map([['user.host', Buffer.from('h')]]));
  });

  it('ADD of a local tar sets the SCHILY.xattr records of its entries, a binary file capability byte for byte', async () => {
    const archive = path.join(src, 'a.tar');
    const h = { type: 'file' as const, mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 1700000000 };
    // v2 capability, effective, cap_setuid + cap_net_raw: holds bytes >= 0x80, not UTF-8
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    await fsp.writeFile(archive, Buffer.concat([
      encodeTarHeader({ ...h, name: 'noted', xattrs: new Map([['user.note', Buffer.from('from tar')]]) }), Buffer.from('n'), padding(1),
      encodeTarHeader({ ...h, name: 'ping', xattrs: new Map([['security.capability', cap]]) }), Buffer.from('p'), padding(1),
      TAR_END,
    ]));
    await copyFrom(['a.tar'], '/x/added/', { extract: true });
    expect(await getAttribute(path.join(dest, 'x/added/noted'), 'user.note')).toEqual(Buffer.from('from tar'));
    expect(await getAttribute(path.join(dest, 'x/added/ping'), 'security.capability')).toEqual(cap);
  });
});

describe('copyAction with many entries in flight at once', () => {
  let src: string;
  let out: string;

  beforeAll(async () => {
    src = path.join(tmp, 'many');
    // 20 directories of 30 files, every mode and owner different enough to notice a mix-up
    for (let d = 0; d < 20; d++) {
      for (let f = 0; f < 30; f++) {
        const p = path.join(src, 'tree', `d${d}`, `f${f}`);
        await write(p, `${d}/${f}\n`, [0o600, 0o644, 0o755, 0o4755, 0o2750][(d + f) % 5]);
        await fsp.lchown(p, d, f);
        await fsp.utimes(p, 1_600_000_000 + d, 1_600_000_000 + d * 100 + f);
      }
      await fsp.utimes(path.join(src, 'tree', `d${d}`), 1_500_000_000, 1_500_000_000 + d);
    }
    // a hard-link group spread over the walk: the first and the last directory
    await fsp.link(path.join(src, 'tree/d0/f0'), path.join(src, 'tree/d19/zz-link'));
    await fsp.link(path.join(src, 'tree/d0/f0'), path.join(src, 'tree/d9/zz-link'));
    await fsp.utimes(path.join(src, 'tree/d9'), 1_500_000_000, 1_500_000_009);
    await fsp.utimes(path.join(src, 'tree/d19'), 1_500_000_000, 1_500_000_019);
    // two sources that write the same paths: the later one wins, files and directory times
    await write(path.join(src, 'a/same/x'), 'from a\n', 0o644);
    await write(path.join(src, 'b/same/x'), 'from b\n', 0o600);
    await fsp.utimes(path.join(src, 'a/same'), 1_400_000_000, 1_400_000_000);
    await fsp.utimes(path.join(src, 'b/same'), 1_400_000_000, 1_400_000_100);
    // the same, for small files with attributes (their attributes are written after the copy)
    for (const [from, mode] of [['xa', 0o644], ['xb', 0o600]] as const) {
      for (let f = 0; f < 40; f++) {
        const p = path.join(src, from, 'same', `x${f}`);
        await write(p, `from ${from}\n`, mode);
        await setAttribute(p, 'user.from', from);
        await fsp.utimes(p, 1_300_000_000, from === 'xa' ? 1_300_000_000 : 1_300_000_100);
      }
    }
    out = path.join(tmp, 'many-out');
    await fsp.mkdir(out);
  });

  function copyFrom(srcPaths: string[], to: string): Promise<void> {
    return copyAction({ type: 'copy', src: 0, srcPaths, dest: to }, src, out);
  }

  it('gives every file its own mode, owner 0:0, times and content, and keeps hard links linked', async () => {
    await copyFrom(['tree'], '/t');
    for (let d = 0; d < 20; d++) {
      for (let f = 0; f < 30; f++) {
        const rel = `d${d}/f${f}`;
        const [a, b] = await Promise.all([fsp.lstat(path.join(src, 'tree', rel)), fsp.lstat(path.join(out, 't', rel))]);
        const want = { mode: a.mode & 0o7777, mtime: a.mtimeMs, owner: '0:0', body: `${d}/${f}\n` };
        const got = { mode: b.mode & 0o7777, mtime: b.mtimeMs, owner: `${b.uid}:${b.gid}`, body: await fsp.readFile(path.join(out, 't', rel), 'utf8') };
        expect([rel, got]).toEqual([rel, want]);
      }
      // set after every child was written, so the copy's own writes do not show
      const dir = `d${d}`;
      expect([dir, (await fsp.lstat(path.join(out, 't', dir))).mtimeMs]).toEqual([dir, (await fsp.lstat(path.join(src, 'tree', dir))).mtimeMs]);
    }
    const first = await fsp.lstat(path.join(out, 't/d0/f0'));
    for (const link of ['d9/zz-link', 'd19/zz-link']) expect((await fsp.lstat(path.join(out, 't', link))).ino).toBe(first.ino);
    expect(first.nlink).toBe(3);
  });

  it('writes two sources for one destination in order: the later file and directory times win', async () => {
    await copyFrom(['a', 'b'], '/m/');
    expect(await fsp.readFile(path.join(out, 'm/same/x'), 'utf8')).toBe('from b\n');
    expect((await fsp.lstat(path.join(out, 'm/same/x'))).mode & 0o7777).toBe(0o600);
    expect((await fsp.lstat(path.join(out, 'm/same'))).mtimeMs).toBe(1_400_000_100 * 1000);
  });

  it('writes two sources of small files with attributes in order: the later content, mode, times and attributes win', async () => {
    await copyFrom(['xa', 'xb'], '/xm/');
    for (let f = 0; f < 40; f++) {
      const p = path.join(out, 'xm/same', `x${f}`);
      const st = await fsp.lstat(p);
      const got = { body: await fsp.readFile(p, 'utf8'), mode: st.mode & 0o7777, mtime: st.mtimeMs, xattrs: await readXattrs(p) };
      expect([f, got]).toEqual([f, { body: 'from xb\n', mode: 0o600, mtime: 1_300_000_100 * 1000, xattrs: new Map([['user.from', Buffer.from('xb')]]) }]);
    }
  });
});
