import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { setAttribute } from '@napi-rs/xattr';

/** Two file capabilities (cap_net_bind_service, cap_net_raw): the one attribute a layer keeps. */
const CAP_BIND = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const CAP_RAW = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
import { loadControlApi } from '../../buildd/api/load-proto';
import { localKeys } from '../../buildctl/local-keys';
import { flattenImage } from '../conformance/harness/flatten-image';
import { BuildEnv, startBuildEnv } from '../helpers/build-env';
import { runBuildctl } from '../helpers/daemon';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(240_000);

type ImageFile = { type: string; mode?: string; sha256?: string; xattrs?: Record<string, string> };

async function imageFiles(archive: string): Promise<Record<string, ImageFile>> {
  return (await flattenImage(archive)).files;
}

/** The daemon's `local synced` log lines since `from` (one per keyed local of each build). */
function synced(stderr: string): Array<{ local: string; filesReceived: number; bytesReceived: number; reused: boolean }> {
  return stderr
    .split('\n')
    .filter((l) => l.includes('"local synced"'))
    .map((l) => JSON.parse(l) as { local: string; filesReceived: number; bytesReceived: number; reused: boolean });
}

describe('incremental context transfer with a real daemon', () => {
  let env: BuildEnv;
  let ctx: string;
  let cfg: string;
  let n = 0;

  beforeAll(async () => {
    // the checksum log tells whether a COPY walked the context to find its key
    env = await startBuildEnv({ NODE_DEBUG: 'buildd-checksum' });
    ctx = path.join(env.tmp, 'ctx');
    cfg = path.join(env.tmp, 'cfg');
    await fsp.mkdir(path.join(ctx, 'src'), { recursive: true });
    for (let i = 0; i < 50; i++) await fsp.writeFile(path.join(ctx, 'src', `f${i}.txt`), `content ${i}\n`.repeat(50));
    await fsp.writeFile(path.join(ctx, 'tool.sh'), '#!/bin/sh\necho tool\n', { mode: 0o644 });
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nCOPY . /app\nRUN ls /app/src | wc -l > /count\n`);
  }, 120_000);
  afterAll(async () => {
    await env?.stop();
  });

  /** A build of ctx as a user with a config dir: its locals are keyed. Returns the image files and the daemon's sync lines. */
  async function build(): Promise<{ files: Record<string, ImageFile>; sync: ReturnType<typeof synced>; stderr: string; digest: string }> {
    const before = synced(env.daemon.stderr()).length;
    const out = path.join(env.tmp, `out-${++n}.tar`);
    const md = path.join(env.tmp, `md-${n}.json`);
    const res = await runBuildctl(
      ['--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', '--output', `type=oci,dest=${out}`, '--metadata-file', md],
      { XDG_CONFIG_HOME: cfg },
    );
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    const digest = (JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>)['containerimage.digest'] as string;
    return { files: await imageFiles(out), sync: synced(env.daemon.stderr()).slice(before), stderr: res.stderr, digest };
  }
  const ctxSync = (s: ReturnType<typeof synced>) => s.find((l) => l.local === 'context');
  /** How many checksums the daemon has computed (NODE_DEBUG=buildd-checksum, store/content-checksum.ts). */
  const checksums = (stderr: string): number => [...stderr.matchAll(/BUILDD-CHECKSUM \d+: checksum of /g)].length;
  /** Where the daemon keeps ctx (its key is hashed with the client's identity): the kept copy that holds src/. */
  async function keyDir(): Promise<string> {
    const base = path.join(env.root, 'locals');
    for (const key of await fsp.readdir(base)) {
      for (const gen of (await fsp.readdir(path.join(base, key))).filter((g) => g.startsWith('gen-'))) {
        if (await fsp.stat(path.join(base, key, gen, 'tree', 'src')).then(() => true, () => false)) return path.join(base, key);
      }
    }
    throw new Error('Cannot find the kept copy of the context');
  }

  test('a cold build sends every file; an unchanged rebuild sends none and yields the same image', async () => {
    const cold = await build();
    expect(ctxSync(cold.sync)).toMatchObject({ filesReceived: 52, reused: false });
    expect(cold.files['app/src/f7.txt']?.type).toBe('file');
    const checksumsBefore = checksums(env.daemon.stderr());
    expect(checksumsBefore).toBeGreaterThan(0);
    const again = await build();
    expect(ctxSync(again.sync)).toMatchObject({ filesReceived: 0, bytesReceived: 0, reused: true });
    // the same kept copy: the COPY's key is remembered, not computed by walking it again
    expect(checksums(env.daemon.stderr())).toBe(checksumsBefore);
    expect(again.digest).toBe(cold.digest);
    expect(again.files).toEqual(cold.files);
    // the progress says what really moved, on the vertex that loads the context
    expect(again.stderr).toMatch(/\[internal\] load build context\n#\d+ [\d.]+ transferring context: 0B [\d.]+s done\n/);
  });

  test('one changed file moves one file; a deleted file is gone from the COPY; a mode-only change shows', async () => {
    const base = await build();
    await fsp.writeFile(path.join(ctx, 'src', 'f3.txt'), 'changed\n');
    await fsp.rm(path.join(ctx, 'src', 'f4.txt'));
    await fsp.chmod(path.join(ctx, 'tool.sh'), 0o755);
    const logged = env.daemon.stderr().length;
    const next = await build();
    expect(ctxSync(next.sync)).toMatchObject({ filesReceived: 1, bytesReceived: 8 });
    // the new copy's COPY key comes from its listing and the digests the daemon holds: no walk
    const log = env.daemon.stderr().slice(logged);
    expect(log).toMatch(/checksum of \S+ \["\."\] from its listing: 52 entries, no walk/);
    expect(log).not.toMatch(/checksum of \S+ \["\."\]: /);
    expect(next.files['app/src/f4.txt']).toBeUndefined();
    expect(next.files['app/src/f3.txt']?.sha256).not.toBe(base.files['app/src/f3.txt']?.sha256);
    expect(next.files['app/tool.sh']?.mode).toBe('0o755');
    expect(next.files['app/src/f5.txt']).toEqual(base.files['app/src/f5.txt']);
  });

  test('a capability-only change moves no content and shows in the image; two concurrent builds of one key both get it right', async () => {
    await setAttribute(path.join(ctx, 'src', 'f6.txt'), 'security.capability', CAP_BIND);
    const first = await build();
    expect(ctxSync(first.sync)).toMatchObject({ filesReceived: 0 });
    expect(first.files['app/src/f6.txt']?.xattrs?.['security.capability']).toBeDefined();
    await setAttribute(path.join(ctx, 'src', 'f6.txt'), 'security.capability', CAP_RAW);
    await fsp.writeFile(path.join(ctx, 'src', 'f7.txt'), 'concurrent\n');
    const before = synced(env.daemon.stderr()).length;
    const [a, b] = await Promise.all([build(), build()]);
    // one sync per key at a time: the second finds the first's copy and moves nothing
    const lines = synced(env.daemon.stderr()).slice(before).filter((l) => l.local === 'context');
    expect(lines.map((l) => l.filesReceived).sort()).toEqual([0, 1]);
    for (const r of [a, b]) {
      expect(r.files['app/src/f6.txt']?.xattrs?.['security.capability']).toBeDefined();
      expect(r.files['app/src/f6.txt']?.xattrs?.['security.capability']).not.toEqual(first.files['app/src/f6.txt']?.xattrs?.['security.capability']);
      expect(r.files['app/src/f7.txt']?.sha256).not.toBe(first.files['app/src/f7.txt']?.sha256);
      expect(r.files).toEqual(a.files);
    }
  });

  test('a transfer cancelled half way leaves no copy a later build trusts, and the daemon serves it', async () => {
    await fsp.writeFile(path.join(ctx, 'src', 'f10.txt'), 'will be cancelled\n');
    await fsp.writeFile(path.join(ctx, 'src', 'f11.txt'), 'this one too\n');
    const keys = await localKeys({ context: ctx }, { XDG_CONFIG_HOME: cfg });
    const dir0 = await keyDir();
    // the generations older builds used go once those builds are done
    const gens = async (): Promise<string[]> => (await fsp.readdir(dir0)).filter((d) => d.startsWith('gen-'));
    const gensBefore = await waitFor('one generation kept', async () => ((await gens()).length === 1 ? gens() : undefined));
    // a raw client: lists the context with the changed files, answers only the first request's first file, then goes away
    const dir = path.join(env.daemon.certsDir as string, 'client');
    const creds = grpc.credentials.createSsl(await fsp.readFile(path.join(dir, 'ca.pem')), await fsp.readFile(path.join(dir, 'key.pem')), await fsp.readFile(path.join(dir, 'cert.pem')));
    const client = new (loadControlApi().Client)(env.daemon.addr.replace('tcp://', ''), creds);
    const call = (client as unknown as { Build(): grpc.ClientDuplexStream<object, { msg: string; file_request?: { paths: string[] } }> }).Build();
    call.on('error', () => undefined);
    const { walkContext } = await import('../../buildctl/context-walk');
    call.write({ start: { frontend: 'dockerfile.v0', frontend_attrs: {}, local_names: ['context'], exports: [], no_cache: false, local_keys: keys } });
    for await (const e of walkContext(ctx)) {
      call.write({ entry: { local: 'context', path: e.rel, type: e.type, mode: e.mode, uid: 0, gid: 0, mtime_ms: e.mtimeMs, link_target: e.linkTarget, size: e.size, xattrs: {} } });
    }
    call.write({ listing_done: { local: 'context' } });
    const asked = await new Promise<string[]>((resolve) => call.on('data', (m) => m.msg === 'file_request' && resolve(m.file_request?.paths ?? [])));
    expect(asked).toEqual(['src/f10.txt', 'src/f11.txt']);
    call.write({ file: { local: 'context', path: 'src/f10.txt' } });
    call.write({ data: { data: await fsp.readFile(path.join(ctx, 'src', 'f10.txt')) } });
    await waitFor('the daemon to stage the answer', async () => ((await fsp.readdir(dir0)).some((d) => d.startsWith('tmp-')) ? true : undefined));
    call.cancel();
    client.close();
    await waitFor('the temp copy to be removed', async () => ((await fsp.readdir(dir0)).some((d) => d.startsWith('tmp-')) ? undefined : true));
    expect(await gens()).toEqual(gensBefore);
    const later = await build();
    expect(ctxSync(later.sync)).toMatchObject({ filesReceived: 2 });
    expect(later.files['app/src/f11.txt']?.sha256).toBeDefined();
  });

  test('kept copies survive a daemon restart, and temp dirs of a killed daemon are removed at start', async () => {
    await build();
    const stale = path.join(await keyDir(), 'tmp-left-by-a-killed-daemon');
    await fsp.mkdir(path.join(stale, 'tree'), { recursive: true });
    await env.restart();
    // the store opens beside the listener: gone soon after start, whether or not a build came
    await waitFor('the stale temp dir to be removed', async () => (await fsp.stat(stale).then(() => undefined, (err: NodeJS.ErrnoException) => err.code === 'ENOENT' || undefined)));
    const after = await build();
    expect(ctxSync(after.sync)).toMatchObject({ filesReceived: 0, reused: true });
  });

  test('a client without a config dir still sends everything (the old protocol)', async () => {
    const before = synced(env.daemon.stderr()).length;
    const res = await env.build(ctx, ['--output', `type=oci,dest=${path.join(env.tmp, 'old.tar')}`]);
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    expect(synced(env.daemon.stderr()).slice(before)).toEqual([]);
    expect(res.stderr).toMatch(/transferring context: [\d.]+kB/);
    expect((await imageFiles(path.join(env.tmp, 'old.tar')))['app/src/f0.txt']?.type).toBe('file');
  });

  test('a config dir that cannot hold the client id sends everything too', async () => {
    const notADir = path.join(env.tmp, 'config-is-a-file');
    await fsp.writeFile(notADir, '');
    const before = synced(env.daemon.stderr()).length;
    const out = path.join(env.tmp, 'no-id.tar');
    const res = await runBuildctl(
      ['--addr', env.daemon.addr, '--tlsdir', path.join(env.daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', '--output', `type=oci,dest=${out}`],
      { XDG_CONFIG_HOME: notADir },
    );
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    expect(synced(env.daemon.stderr()).slice(before)).toEqual([]);
    expect((await imageFiles(out))['app/src/f0.txt']?.type).toBe('file');
  });
});
