import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { setAttribute } from '@napi-rs/xattr';
import { BuildEnv, startBuildEnv } from '../helpers/build-env';
import { runBuildctl } from '../helpers/daemon';

const run = promisify(execFile);
jest.setTimeout(240_000);

/** One layer entry as the tar says it, with its content's sha256. */
type LayerEntry = { name: string; type: string; mode: string; uid: number; gid: number; mtime: number; size: number; linkname: string; sha256?: string; xattrs: Record<string, string> };

/** The layers of an OCI archive (`--output type=oci`), each as its entries in tar order. */
async function layers(archive: string): Promise<LayerEntry[][]> {
  const script = `
import hashlib, json, sys, tarfile
outer = tarfile.open(sys.argv[1])
blob = lambda d: outer.extractfile('blobs/sha256/' + d.split(':')[1])
index = json.load(outer.extractfile('index.json'))
manifest = json.load(blob(index['manifests'][0]['digest']))
out = []
for layer in manifest['layers']:
    entries = []
    with tarfile.open(fileobj=blob(layer['digest']), mode='r:*') as t:
        for m in t:
            e = {'name': m.name, 'type': m.type.decode(), 'mode': oct(m.mode), 'uid': m.uid, 'gid': m.gid, 'mtime': int(m.mtime), 'size': m.size, 'linkname': m.linkname,
                 'xattrs': {k: v for k, v in (m.pax_headers or {}).items() if k.startswith('SCHILY.xattr.')}}
            if m.isfile(): e['sha256'] = hashlib.sha256(t.extractfile(m).read()).hexdigest()
            entries.append(e)
    out.append(entries)
print(json.dumps(out))
`;
  const { stdout } = await run('python3', ['-c', script, archive], { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as LayerEntry[][];
}

describe('COPY from a kept context: files hard-linked into the layer', () => {
  let env: BuildEnv;
  let ctx: string;
  let cfg: string;
  let n = 0;

  beforeAll(async () => {
    env = await startBuildEnv();
    ctx = path.join(env.tmp, 'ctx');
    cfg = path.join(env.tmp, 'cfg');
    await fsp.mkdir(path.join(ctx, 'sub', 'deeper'), { recursive: true });
    await fsp.mkdir(path.join(ctx, 'empty'));
    await fsp.writeFile(path.join(ctx, 'a.txt'), 'a\n');
    await fsp.writeFile(path.join(ctx, 'sub', 'deeper', 'b.txt'), 'b\n'.repeat(40_000));
    await fsp.writeFile(path.join(ctx, 'tool'), '#!/bin/sh\n', { mode: 0o4755 });
    await fsp.chmod(path.join(ctx, 'tool'), 0o4755);
    await setAttribute(path.join(ctx, 'a.txt'), 'user.note', Buffer.from('kept'));
    await fsp.symlink('sub/deeper/b.txt', path.join(ctx, 'link'));
    // owned by someone else on this machine: the image has 0:0 either way
    await fsp.chown(path.join(ctx, 'sub', 'deeper', 'b.txt'), 1234, 4321);
    await fsp.writeFile(
      path.join(ctx, 'Dockerfile'),
      [
        `FROM ${env.busybox}`,
        // lower directories with times of their own: copy-up must keep them where overlayfs keeps them
        'RUN mkdir -p /usr/local/share/empty && touch -d @1000000000 /usr/local /usr/local/share /usr/local/share/empty',
        'COPY . /usr/local/share/app/',
        'COPY . /usr/local/share/empty/',
        'COPY sub /fresh',
        'RUN --mount=type=bind,target=/c stat -c %u:%g /c/sub/deeper/b.txt > /bind-owner && echo changed >> /usr/local/share/app/a.txt',
        '',
      ].join('\n'),
    );
  }, 120_000);
  afterAll(async () => {
    await env?.stop();
  });

  /** Builds ctx to an OCI archive, keyed (a config dir: the kept copy, linked) or not (the old protocol: copied through the mount). */
  async function build(keyed: boolean): Promise<LayerEntry[][]> {
    const out = path.join(env.tmp, `out-${++n}.tar`);
    const res = keyed
      ? await runBuildctl(
          ['--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--output', `type=oci,dest=${out}`, '--no-cache'],
          { XDG_CONFIG_HOME: cfg },
        )
      : await env.build(ctx, ['--output', `type=oci,dest=${out}`, '--no-cache']);
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    return layers(out);
  }

  /** Where the kept copy holds `rel`, and every snapshot upper dir that holds `inUpper`. */
  async function inodes(rel: string, inUpper: string): Promise<{ kept: number[]; uppers: number[] }> {
    const kept: number[] = [];
    const base = path.join(env.root, 'locals');
    for (const key of await fsp.readdir(base)) {
      for (const gen of (await fsp.readdir(path.join(base, key))).filter((g) => g.startsWith('gen-'))) {
        const st = await fsp.lstat(path.join(base, key, gen, 'tree', rel)).catch(() => undefined);
        if (st) kept.push(st.ino);
      }
    }
    const uppers: number[] = [];
    const snaps = path.join(env.root, 'snapshots');
    for (const id of await fsp.readdir(snaps)) {
      const st = await fsp.lstat(path.join(snaps, id, 'fs', inUpper)).catch(() => undefined);
      if (st) uppers.push(st.ino);
    }
    return { kept, uppers };
  }

  test('the layers are entry for entry those of a copy through the mount, and the files share the kept inodes', async () => {
    const copied = await build(false);
    const linked = await build(true);
    expect(linked.length).toBe(copied.length);
    // the last four layers: the three COPYs, then the RUN
    const [app, empty, fresh, last] = [linked.length - 4, linked.length - 3, linked.length - 2, linked.length - 1];
    for (const i of [app, empty, fresh]) {
      // mtimes of directories the copy creates or creates entries in are the time of the build,
      // and /usr's is that of the RUN before (it made /usr/local), another time in each build
      const now = new Set(['usr', 'usr/local/share', 'usr/local/share/app', 'usr/local/share/empty', 'fresh']);
      const strip = (l: LayerEntry[]) => l.map((e) => (now.has(e.name) ? { ...e, mtime: 0 } : e));
      expect(strip(linked[i] as LayerEntry[])).toEqual(strip(copied[i] as LayerEntry[]));
    }
    const names = (i: number) => (linked[i] as LayerEntry[]).map((e) => e.name);
    expect(names(app)).toEqual(expect.arrayContaining(['usr', 'usr/local', 'usr/local/share', 'usr/local/share/app/a.txt', 'usr/local/share/app/sub/deeper/b.txt', 'usr/local/share/app/link']));
    // the parents copied up keep their lower times, the one the copy writes into does not
    const entry = (i: number, name: string) => (linked[i] as LayerEntry[]).find((e) => e.name === name) as LayerEntry;
    expect(entry(app, 'usr/local').mtime).toBe(1000000000);
    expect(entry(app, 'usr').mtime).toBe(entry(app - 1, 'usr').mtime);
    expect(entry(app, 'usr/local/share').mtime).not.toBe(1000000000);
    expect(entry(app, 'usr/local/share/app/tool').mode).toBe('0o4755');
    expect(entry(app, 'usr/local/share/app/a.txt').xattrs).toEqual({});
    expect(entry(app, 'usr/local/share/app/sub/deeper/b.txt')).toMatchObject({ uid: 0, gid: 0, type: '0' });
    // the context arrives owned by 0:0, as BuildKit's client sends it
    const bindOwner = (linked[last] as LayerEntry[]).find((e) => e.name === 'bind-owner') as LayerEntry;
    const copiedOwner = (copied[last] as LayerEntry[]).find((e) => e.name === 'bind-owner') as LayerEntry;
    expect(bindOwner.sha256).toBe(copiedOwner.sha256);
    const { stdout } = await run('sh', ['-c', 'printf "0:0\\n" | sha256sum']);
    expect(bindOwner.sha256).toBe(stdout.split(' ')[0]);

    const { kept, uppers } = await inodes('a.txt', 'usr/local/share/app/a.txt');
    expect(kept.length).toBeGreaterThan(0);
    expect(uppers.filter((ino) => kept.includes(ino)).length).toBe(1);
  });

  test('a RUN that writes a linked file changes neither the kept copy nor the COPY layer', async () => {
    const first = await build(true);
    const keptFile = async (): Promise<string[]> => {
      const out: string[] = [];
      const base = path.join(env.root, 'locals');
      for (const key of await fsp.readdir(base)) {
        for (const gen of (await fsp.readdir(path.join(base, key))).filter((g) => g.startsWith('gen-'))) {
          const text = await fsp.readFile(path.join(base, key, gen, 'tree', 'a.txt'), 'utf8').catch(() => undefined);
          if (text !== undefined) out.push(text);
        }
      }
      return out;
    };
    expect(await keptFile()).toEqual(['a\n']);
    const [app, last] = [first.length - 4, first.length - 1];
    const copyLayer = (first[app] as LayerEntry[]).find((e) => e.name === 'usr/local/share/app/a.txt') as LayerEntry;
    const runLayer = (first[last] as LayerEntry[]).find((e) => e.name === 'usr/local/share/app/a.txt') as LayerEntry;
    const { stdout } = await run('sh', ['-c', 'printf "a\\n" | sha256sum']);
    expect(copyLayer.sha256).toBe(stdout.split(' ')[0]);
    expect(runLayer.sha256).not.toBe(copyLayer.sha256);
    // and a rebuild still finds the kept copy as it was
    const again = await build(true);
    expect(again[app]).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'usr/local/share/app/a.txt', sha256: copyLayer.sha256 })]));
    expect(await keptFile()).toEqual(['a\n']);
  });

  test('COPY --from a stage links the files of the one layer that holds the source, and copies a path two layers share', async () => {
    const dir = path.join(env.tmp, 'from');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(
      path.join(dir, 'Dockerfile'),
      [
        `FROM ${env.busybox} AS build`,
        'RUN mkdir -p /made/sub /both && echo linked-from-layer > /made/sub/f && echo 1 > /both/a && echo moved > /moved',
        // a file moved out of a lower layer is copied up: it carries overlayfs' origin attribute
        'RUN echo 2 > /both/b && mkdir /made2 && mv /moved /made2/',
        `FROM ${env.busybox}`,
        'COPY --from=build /made /made',
        'COPY --from=build /both /both',
        'COPY --from=build /made2 /made2',
        '',
      ].join('\n'),
    );
    const res = await env.build(dir, ['--no-cache']);
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    const snaps = path.join(env.root, 'snapshots');
    const found = async (rel: string): Promise<Array<{ ino: number; nlink: number }>> => {
      const out: Array<{ ino: number; nlink: number }> = [];
      for (const id of await fsp.readdir(snaps)) {
        const st = await fsp.lstat(path.join(snaps, id, 'fs', rel)).catch(() => undefined);
        if (st) out.push({ ino: st.ino, nlink: st.nlink });
      }
      return out;
    };
    // the stage's layer and the COPY's layer hold one inode
    const made = await found('made/sub/f');
    expect(made.length).toBe(2);
    expect(made[0]?.ino).toBe(made[1]?.ino);
    // the moved file is copied, leaving overlayfs' attribute behind
    const moved = await found('made2/moved');
    expect(moved.length).toBe(2);
    expect(moved[0]?.ino).not.toBe(moved[1]?.ino);
    // /both is in two layers of the stage: merged through the mount, copied
    const both = await found('both/a');
    expect(both.length).toBe(2);
    expect(both[0]?.ino).not.toBe(both[1]?.ino);
  });

  test('no inode shows at two paths of one image: a second COPY of the same context, or of a layer already below, copies', async () => {
    const dir = path.join(env.tmp, 'twice');
    await fsp.mkdir(path.join(dir, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'sub', 'f'), 'shared?\n');
    await fsp.writeFile(
      path.join(dir, 'Dockerfile'),
      [`FROM ${env.busybox} AS s`, 'COPY sub /a/', 'COPY sub /b/', 'FROM s', 'COPY --from=s /a /again', ''].join('\n'),
    );
    const res = await runBuildctl(
      ['--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${dir}`, '--local', `dockerfile=${dir}`, '--no-cache'],
      { XDG_CONFIG_HOME: cfg },
    );
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    const snaps = path.join(env.root, 'snapshots');
    const inodeOf = async (rel: string): Promise<number[]> => {
      const out: number[] = [];
      for (const id of await fsp.readdir(snaps)) {
        const st = await fsp.lstat(path.join(snaps, id, 'fs', rel)).catch(() => undefined);
        if (st) out.push(st.ino);
      }
      return out;
    };
    const [a, b, again] = [await inodeOf('a/f'), await inodeOf('b/f'), await inodeOf('again/f')];
    expect([a.length, b.length, again.length]).toEqual([1, 1, 1]);
    // the first COPY links from the kept copy; the second would put that inode at /b too
    expect(b[0]).not.toBe(a[0]);
    // /again would be /a's inode again, in a chain that holds /a
    expect(again[0]).not.toBe(a[0]);
  });

  test('a COPY to / over a base that has files goes through the mount, as an unkeyed build does', async () => {
    // not env.tmp/root: that is the daemon's root, which the context must not be
    const dir = path.join(env.tmp, 'copy-over-root');
    await fsp.mkdir(path.join(dir, 'rootfs', 'lnk'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'rootfs', 'lnk', 'tool'), 'tool\n');
    await fsp.writeFile(path.join(dir, 'rootfs', 'new.txt'), 'new\n');
    await fsp.writeFile(path.join(dir, 'Dockerfile'), [`FROM ${env.busybox}`, 'RUN mkdir /real && ln -s real /lnk', 'COPY rootfs/ /', ''].join('\n'));
    const outOf = async (keyed: boolean): Promise<{ code: number | null; error: string }> => {
      const args = ['build', '--frontend', 'dockerfile.v0', '--local', `context=${dir}`, '--local', `dockerfile=${dir}`, '--no-cache'];
      const res = keyed
        ? await runBuildctl(['--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'), ...args], { XDG_CONFIG_HOME: cfg })
        : await env.build(dir, ['--no-cache']);
      return { code: res.code, error: /ERROR: .*/.exec(res.stderr)?.[0] ?? '' };
    };
    const [keyed, unkeyed] = [await outOf(true), await outOf(false)];
    expect(keyed).toEqual(unkeyed);
    // as BuildKit ("cannot copy to non-directory"): the base's symlink is in the way, not hidden;
    // named as the image has it, not by the daemon's path of its mount
    expect(keyed).toEqual({ code: 1, error: expect.stringContaining('Cannot copy lnk: /lnk exists and is not a directory') });
  });
});
