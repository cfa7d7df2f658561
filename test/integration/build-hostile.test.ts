import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import { flattenImage } from '../conformance/harness/flatten-image';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';
import { makeBusyboxRootfs } from '../helpers/busybox-image';
import { pushOciImage } from '../helpers/push-oci-image';

const run = promisify(execFile);

type Entry = { name: string; type?: 'file' | 'symlink' | 'link' | 'directory'; linkname?: string; content?: string };

async function writeTar(file: string, entries: Entry[]): Promise<string> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(file));
  for (const e of entries) {
    const header = { name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: e.type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0 };
    await new Promise<void>((resolve, reject) => pack.entry(header, e.content ?? '', (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return file;
}

async function files(archive: string): Promise<Record<string, { type: string; target?: string; sha256?: string }>> {
  return (await flattenImage(archive)).files;
}

describe('hostile layers and contexts never reach outside their root', () => {
  let env: BuildEnv;
  let baseLayer: string;
  const tag = randomBytes(4).toString('hex');
  const hostPaths = [`/tmp/pwned-${tag}`, `/etc/pwned-${tag}`, `/escape-${tag}`, `/tmp/escape-${tag}`];

  beforeAll(async () => {
    env = await startBuildEnv();
    const rootfs = path.join(env.tmp, 'busybox-rootfs');
    await makeBusyboxRootfs(rootfs);
    baseLayer = path.join(env.tmp, 'base.tar.gz');
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-czf', baseLayer, '.']);
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
    for (const p of hostPaths) await fsp.rm(p, { force: true });
  });

  const assertHostUntouched = (): void => {
    for (const p of hostPaths) expect(existsSync(p)).toBe(false);
    expect(existsSync(path.join(env.root, '..', `escape-${tag}`))).toBe(false);
  };

  test('a layer with ../escape, a symlink to / written through, and a symlink to /etc written through stays inside its root', async () => {
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    const layer = await writeTar(path.join(env.tmp, 'hostile.tar'), [
      { name: `../escape-${tag}`, content: 'escaped?\n' },
      { name: '/abs-escape', content: 'absolute\n' },
      { name: 'evil', type: 'symlink', linkname: '/' },
      { name: `evil/tmp/pwned-${tag}`, content: 'through a symlink to /\n' },
      { name: 'etc-link', type: 'symlink', linkname: '/etc' },
      { name: `etc-link/pwned-${tag}`, content: 'through a symlink to /etc\n' },
      { name: 'hard-passwd', type: 'link', linkname: '/etc/passwd' },
    ]);
    const image = await pushOciImage(env.registry.host, 'hostile', tag, [baseLayer, layer]);
    const ctx = await writeContext(path.join(env.tmp, 'hostile-ctx'), { Dockerfile: `FROM ${image.ref}\nRUN ls / > /seen-root && cat /tmp/pwned-${tag} /etc/pwned-${tag} > /seen-pwned && cat /hard-passwd > /seen-hard\n` });
    const out = path.join(env.tmp, 'hostile-out.tar');
    const res = await env.build(ctx, ['--output', `type=oci,dest=${out}`]);
    expect(res.stderr).toContain('RUN ls / > /seen-root');
    expect(res.code).toBe(0);
    assertHostUntouched();
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
    // What the RUN saw, inside the container: everything the layer named landed inside the root.
    const unpacked = path.join(env.tmp, 'hostile-unpacked');
    await run('skopeo', ['copy', '--quiet', `oci-archive:${out}`, `oci:${unpacked}:x`]);
    const manifest = JSON.parse(await fsp.readFile(path.join(unpacked, 'blobs', 'sha256', JSON.parse(await fsp.readFile(path.join(unpacked, 'index.json'), 'utf8')).manifests[0].digest.slice(7)), 'utf8'));
    const runLayer = path.join(unpacked, 'blobs', 'sha256', manifest.layers[manifest.layers.length - 1].digest.slice(7));
    const read = async (name: string): Promise<string> => (await run('tar', ['-xzOf', runLayer, name])).stdout;
    const seenRoot = (await read('seen-root')).split('\n');
    expect(seenRoot).toEqual(expect.arrayContaining([`escape-${tag}`, 'abs-escape', 'evil', 'etc-link', 'hard-passwd']));
    expect(await read('seen-pwned')).toBe('through a symlink to /\nthrough a symlink to /etc\n');
    // The hard link points at the image's passwd, never the host's.
    expect(await read('seen-hard')).toBe('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n');
    const { stdout } = await run('tar', ['-xOf', out, 'index.json']);
    expect(JSON.parse(stdout).manifests).toHaveLength(1);
  }, 120_000);

  test('a hard link to a path outside the image fails the build clearly and touches nothing', async () => {
    const layer = await writeTar(path.join(env.tmp, 'hardlink.tar'), [{ name: 'shadow-link', type: 'link', linkname: '../../../../../etc/shadow' }]);
    const image = await pushOciImage(env.registry.host, 'hardlink', tag, [baseLayer, layer]);
    const ctx = await writeContext(path.join(env.tmp, 'hardlink-ctx'), { Dockerfile: `FROM ${image.ref}\nRUN true\n` });
    const res = await env.build(ctx, ['--output', `type=oci,dest=${path.join(env.tmp, 'never.tar')}`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/shadow-link/);
    assertHostUntouched();
    expect(await env.mounts()).toEqual([]);
  }, 120_000);

  test('a context symlink to /etc/passwd is sent and copied as a symlink; copying through it finds nothing', async () => {
    const ctx = await writeContext(path.join(env.tmp, 'symlink-ctx'), {
      'dir/leak': { symlink: '/etc/passwd' },
      'dir/ok.txt': 'ok\n',
      Dockerfile: `FROM ${env.busybox}\nCOPY dir /copied/\n`,
    });
    const out = path.join(env.tmp, 'symlink-out.tar');
    const res = await env.build(ctx, ['--output', `type=oci,dest=${out}`]);
    expect(res.code).toBe(0);
    const f = await files(out);
    expect(f['copied/leak']).toEqual(expect.objectContaining({ type: 'symlink', target: '/etc/passwd' }));
    expect(f['copied/ok.txt']).toMatchObject({ type: 'file' });

    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nCOPY dir/leak /leaked\n`);
    const through = await env.build(ctx, ['--output', `type=oci,dest=${path.join(env.tmp, 'never2.tar')}`]);
    expect(through.code).not.toBe(0);
    expect(through.stderr).toMatch(/dir\/leak.*not found|not found.*dir\/leak/);
  }, 120_000);
});
