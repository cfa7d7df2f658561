import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { statusToBuildError } from '../../../../buildd/api/grpc-status';
import { loadControlApi } from '../../../../buildd/api/load-proto';
import { BuildService } from '../../../../buildd/build-service';
import type { Builder, BuildRequest, BuildSession, ExporterResponse } from '../../../../buildd/builder';
import { localKeys } from '../../../../buildctl/local-keys';
import { storeKey } from '../../../../buildd/locals/store-key';
import { PlainRenderer } from '../../../../buildctl/progress-plain';
import { runBuild } from '../../../../buildctl/run-build';
import type { UploadStats } from '../../../../buildctl/upload-locals';
import { BuildError } from '../../../../solver/build-error';
import { FileDigestCache } from '../../../../store/file-digest-cache';
import { waitFor } from '../../../helpers/wait-for';

/** Every entry of a tree: path, type, mode, size, content hash, mtime; lstat only. */
async function describeTree(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const abs = path.join(root, r);
    const st = await fsp.lstat(abs);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out.push(`L ${r} -> ${await fsp.readlink(abs)}`);
    else if (st.isDirectory()) {
      out.push(`D ${r} ${mode} ${Math.floor(st.mtimeMs)}`);
      out.push(...(await describeTree(root, r)));
    } else {
      const sha = createHash('sha256').update(await fsp.readFile(abs)).digest('hex').slice(0, 12);
      out.push(`F ${r} ${mode} ${st.size} ${sha} ${Math.floor(st.mtimeMs)}`);
    }
  }
  return out;
}

/** Records the tree of each local as the builder saw it, and can hold a build until told. */
class RecordingBuilder implements Builder {
  trees: Array<Record<string, string[]>> = [];
  dirs: Array<Record<string, string>> = [];
  behave: (req: BuildRequest, s: BuildSession) => Promise<ExporterResponse> = async () => ({});
  async build(req: BuildRequest, s: BuildSession): Promise<ExporterResponse> {
    const trees: Record<string, string[]> = {};
    for (const [name, dir] of Object.entries(req.locals)) trees[name] = await describeTree(dir);
    this.trees.push(trees);
    this.dirs.push(req.locals);
    return this.behave(req, s);
  }
  async close(): Promise<void> {}
}

describe('incremental locals (BuildStart.local_keys)', () => {
  let tmp: string;
  let server: grpc.Server;
  let client: grpc.Client;
  let service: BuildService;
  let ctx: string;
  const builder = new RecordingBuilder();
  const keys = { context: 'k-context' };

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-keyed-'));
    service = new BuildService({ builder, root: path.join(tmp, 'root'), logger: pino({ level: 'silent' }) });
    server = new grpc.Server();
    server.addService(loadControlApi().service, service.handlers());
    const sock = path.join(tmp, 'b.sock');
    await new Promise<void>((res, rej) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    client = new (loadControlApi().Client)(`unix://${sock}`, grpc.credentials.createInsecure());
    ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(path.join(ctx, 'sub'), { recursive: true });
    for (let i = 0; i < 20; i++) await fsp.writeFile(path.join(ctx, 'sub', `f${i}`), `file ${i}\n`.repeat(100));
    await fsp.writeFile(path.join(ctx, 'run.sh'), '#!/bin/sh\n', { mode: 0o644 });
    await fsp.writeFile(path.join(ctx, 'empty'), '');
    await fsp.symlink('sub/f1', path.join(ctx, 'link'));
    await fsp.utimes(path.join(ctx, 'sub'), 1_500_000_000, 1_500_000_000);
  });
  afterAll(async () => {
    client.close();
    await service.shutdown();
    await new Promise<void>((res) => server.tryShutdown(() => res()));
    await fsp.rm(tmp, { recursive: true, force: true });
  });
  beforeEach(() => {
    builder.behave = async () => ({});
  });

  async function build(localKeys: Record<string, string> = keys): Promise<UploadStats> {
    let stats: UploadStats | undefined;
    await runBuild(client, {
      frontend: 'dockerfile.v0',
      frontendAttrs: {},
      locals: { context: ctx },
      outputs: [],
      noCache: false,
      localKeys,
      onUploaded: (s) => (stats = s),
      progress: new PlainRenderer({ write: () => undefined, now: () => 0 }),
    });
    return stats as UploadStats;
  }
  const store = async () => service.keptLocals();
  const generations = async (): Promise<string[]> => (await fsp.readdir(path.join(tmp, 'root', 'locals', storeKey('', 'k-context'))).catch(() => [])).sort();

  it('sends everything the first time, nothing when unchanged, and gives the builder the same tree', async () => {
    const first = await build();
    expect(first.files).toBe(21);
    const expected = await describeTree(ctx);
    expect(builder.trees.at(-1)?.['context']).toEqual(expected);
    const firstDir = builder.dirs.at(-1)?.['context'];
    const again = await build();
    expect(again).toEqual({ files: 0, bytes: 0 });
    expect(builder.trees.at(-1)?.['context']).toEqual(expected);
    // the very same generation: no file operation at all
    expect(builder.dirs.at(-1)?.['context']).toBe(firstDir);
    expect((await store()).list()).toMatchObject([{ key: storeKey('', 'k-context'), entries: 24 }]);
  });

  it('records the digest of every file it receives, so the first COPY reads none of them again', async () => {
    // its own cache, its clock past the racy window: the files were written moments ago
    const digests = new FileDigestCache({ now: () => Date.now() + 60_000 });
    const recording = new BuildService({ builder, root: path.join(tmp, 'root-digests'), logger: pino({ level: 'silent' }), fileDigests: digests });
    const srv = new grpc.Server();
    srv.addService(loadControlApi().service, recording.handlers());
    const sock = path.join(tmp, 'digests.sock');
    await new Promise<void>((res, rej) => srv.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    const c = new (loadControlApi().Client)(`unix://${sock}`, grpc.credentials.createInsecure());
    try {
      await runBuild(c, { frontend: 'dockerfile.v0', frontendAttrs: {}, locals: { context: ctx }, outputs: [], noCache: false, localKeys: keys, progress: new PlainRenderer({ write: () => undefined, now: () => 0 }) });
      const dir = builder.dirs.at(-1)?.['context'] as string;
      // 20 files of content and run.sh; the empty file has no content to receive
      expect(digests.size).toBe(21);
      for (const rel of ['sub/f7', 'run.sh']) {
        const found = digests.lookup(await fsp.lstat(path.join(dir, rel)));
        expect(found).toEqual({ digest: createHash('sha256').update(await fsp.readFile(path.join(ctx, rel))).digest('hex') });
      }
    } finally {
      c.close();
      await recording.shutdown();
      await new Promise<void>((res) => srv.tryShutdown(() => res()));
    }
  });

  it('sends one changed file only, drops a deleted one, and keeps unchanged inodes', async () => {
    await build();
    const before = builder.dirs.at(-1)?.['context'] as string;
    const ino = (await fsp.stat(path.join(before, 'sub', 'f2'))).ino;
    await fsp.writeFile(path.join(ctx, 'sub', 'f3'), 'changed\n');
    await fsp.rm(path.join(ctx, 'sub', 'f4'));
    const stats = await build();
    expect(stats).toEqual({ files: 1, bytes: 8 });
    const tree = builder.trees.at(-1)?.['context'] as string[];
    expect(tree).toEqual(await describeTree(ctx));
    expect(tree.some((l) => l.startsWith('F sub/f4 '))).toBe(false);
    const after = builder.dirs.at(-1)?.['context'] as string;
    expect(after).not.toBe(before);
    expect((await fsp.stat(path.join(after, 'sub', 'f2'))).ino).toBe(ino);
    // the old generation goes once no build uses it
    await (await store()).idle();
    await waitFor('one generation left', async () => ((await generations()).length === 1 ? true : undefined));
  });

  it('reflects a mode-only change without sending content, and never changes the kept inode', async () => {
    await build();
    const before = builder.dirs.at(-1)?.['context'] as string;
    // a build still using the old generation must see it unchanged
    let release!: () => void;
    builder.behave = () => new Promise((res) => (release = () => res({})));
    const holding = build();
    await waitFor('the holding build to run', async () => (release !== undefined ? true : undefined));
    builder.behave = async () => ({});
    await fsp.chmod(path.join(ctx, 'run.sh'), 0o755);
    const stats = await build();
    expect(stats).toEqual({ files: 0, bytes: 0 });
    const after = builder.dirs.at(-1)?.['context'] as string;
    expect((await fsp.stat(path.join(after, 'run.sh'))).mode & 0o777).toBe(0o755);
    expect((await fsp.stat(path.join(before, 'run.sh'))).mode & 0o777).toBe(0o644);
    expect(builder.trees.at(-1)?.['context']).toEqual(await describeTree(ctx));
    release();
    await holding;
  });

  it('serves two concurrent builds of one key, both with the right tree', async () => {
    await fsp.writeFile(path.join(ctx, 'sub', 'f5'), 'concurrent\n');
    const [a, b] = await Promise.all([build(), build()]);
    // the sync is serialized per key: the second sees the first's generation and sends nothing
    expect(a.files + b.files).toBe(1);
    const expected = await describeTree(ctx);
    expect(builder.trees.at(-1)?.['context']).toEqual(expected);
    expect(builder.trees.at(-2)?.['context']).toEqual(expected);
  });

  it('keeps the copy under a name derived from the key and the client, never the key itself', async () => {
    expect(await fsp.readdir(path.join(tmp, 'root', 'locals'))).not.toContain('k-context');
    expect(storeKey('AB:CD', 'k-context')).not.toBe(storeKey('', 'k-context'));
    expect(storeKey('', 'k-context')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('still takes a full transfer from a client that sends no key', async () => {
    const stats = await build({});
    expect(stats.files).toBe(20);
    expect(builder.trees.at(-1)?.['context']).toEqual(await describeTree(ctx));
    expect(builder.dirs.at(-1)?.['context']).toContain(`${path.sep}sessions${path.sep}`);
  });

  it('derives a stable key per client id, directory and local, and none without a config dir', async () => {
    const env = { XDG_CONFIG_HOME: path.join(tmp, 'cfg') };
    const a = await localKeys({ context: ctx, dockerfile: ctx }, env);
    expect(a['context']).toMatch(/^[0-9a-f]{64}$/);
    expect(a['dockerfile']).not.toBe(a['context']);
    expect(await localKeys({ context: ctx }, env)).toEqual({ context: a['context'] });
    expect(await localKeys({ context: path.join(tmp) }, env)).not.toEqual({ context: a['context'] });
    expect(await localKeys({ context: ctx }, {})).toEqual({});
    expect((await fsp.stat(path.join(tmp, 'cfg', 'buildd', 'client-id'))).mode & 0o777).toBe(0o600);
  });

  /** Sends raw messages, answering nothing; then reads the call's end. */
  async function rawBuild(messages: object[]): Promise<BuildError | 'ok'> {
    const call = (client as unknown as { Build(): grpc.ClientDuplexStream<object, unknown> }).Build();
    for (const m of messages) call.write(m);
    call.end();
    return new Promise((resolve) => {
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve(statusToBuildError(e)));
      call.on('end', () => resolve('ok'));
    });
  }
  const start = { start: { frontend: 'f', frontend_attrs: {}, local_names: ['context'], exports: [], no_cache: false, local_keys: { context: 'k-hostile' } } };
  const entry = (p: string, extra: object = {}) => ({
    entry: { local: 'context', path: p, type: 'FILE', mode: 0o644, uid: 0, gid: 0, mtime_ms: 0, link_target: '', size: 3, ...extra },
  });
  const done = { listing_done: { local: 'context' } };
  /** A FileListing of files `paths` (size 3), with `extra` replacing whole columns. */
  const listing = (paths: string[], extra: object = {}) => ({
    listing: {
      local: 'context',
      paths,
      types: paths.map(() => 'FILE'),
      modes: paths.map(() => 0o644),
      uids: paths.map(() => 0),
      gids: paths.map(() => 0),
      mtimes_ms: paths.map(() => 0),
      sizes: paths.map(() => 3),
      link_targets: paths.map(() => ''),
      xattrs: [],
      ...extra,
    },
  });
  const header = (p: string) => ({ file: { local: 'context', path: p } });
  const data = (s: string) => ({ data: { data: Buffer.from(s) } });

  it.each<[string, () => object[], RegExp]>([
    ['content that was not requested', () => [start, entry('a', { size: 0 }), done, header('a')], /context\/a: its content was not requested/],
    ['content for a path not in the listing', () => [start, entry('a'), done, header('b')], /context\/b: not in the listing/],
    ['a requested file never answered', () => [start, entry('a'), done, { locals_done: {} }], /context\/a: the client never sent its requested content/],
    ['a requested file answered twice', () => [start, entry('a'), done, header('a'), data('abc'), header('a')], /context\/a: its content was not requested, or was sent already/],
    ['more data than listed', () => [start, entry('a'), done, header('a'), data('abcd')], /more data than its size 3/],
    ['less data than listed', () => [start, entry('a'), done, header('a'), data('ab'), { locals_done: {} }], /got 2 of its 3 bytes/],
    ['an entry listed twice', () => [start, entry('a'), entry('a')], /context\/a: sent twice/],
    ['an entry under a symlink', () => [start, entry('l', { type: 'SYMLINK', link_target: '/etc', size: 0 }), entry('l/x')], /its parent is a symlink/],
    ['an entry before its parent', () => [start, entry('d/x')], /parent directory was not sent/],
    ['an entry after the listing was done', () => [start, done, entry('a')], /listed after the listing of its local was done/],
    ['locals_done before the listing was done', () => [start, entry('a', { size: 0 }), { locals_done: {} }], /before the listing of context was done/],
    ['a batch of entries of a local without a key', () => [{ start: { ...start.start, local_names: ['context', 'plain'] } }, { entries: { entries: [{ ...entry('a').entry, local: 'plain' }] } }], /plain\/a: only the listing of a keyed local may come in a batch/],
    ['a batched entry listed twice', () => [start, { entries: { entries: [entry('a').entry, entry('a').entry] } }], /context\/a: sent twice/],
    ['a listing of a local without a key', () => [{ start: { ...start.start, local_names: ['context', 'plain'] } }, { listing: { ...listing(['a']).listing, local: 'plain' } }], /plain\/a: only the listing of a keyed local may come in a batch/],
    ['a listed entry listed twice', () => [start, listing(['a', 'a'])], /context\/a: sent twice/],
    ['a listing entry under a symlink', () => [start, listing(['l', 'l/x'], { types: ['SYMLINK', 'FILE'], sizes: [0, 3], link_targets: ['/etc', ''] })], /its parent is a symlink/],
    ['a listing path with ..', () => [start, listing(['../x'])], /"\.\." component/],
    ['a listing column shorter than its paths', () => [start, listing(['a', 'b'], { sizes: [3] })], /column sizes has 1 values for 2 paths/],
    ['listing attributes of an entry it does not have', () => [start, listing(['a'], { xattrs: [{ index: 1, attrs: { 'user.x': Buffer.from('v') } }] })], /attributes for entry 1: out of range/],
    ['listing attributes out of order', () => [start, listing(['a', 'b'], { xattrs: [{ index: 1, attrs: { 'user.x': Buffer.from('v') } }, { index: 0, attrs: { 'user.y': Buffer.from('v') } }] })], /attributes for entry 0: out of range or out of order/],
    ['a listed trusted.* attribute', () => [start, listing(['a'], { xattrs: [{ index: 0, attrs: { 'trusted.x': Buffer.from('v') } }] })], /trusted/],
    ['a listed directory with a size', () => [start, listing(['d'], { types: ['DIR'] })], /Only files have a size \(d\)/],
    ['a listed file with a link target', () => [start, listing(['a'], { link_targets: ['/etc'] })], /only a symlink, has a link target \(a\)/],
    ['a key for an undeclared local', () => [{ start: { ...start.start, local_keys: { other: 'k' } } }], /local key names a local that is not in local_names/],
    ['a key that is not a name', () => [{ start: { ...start.start, local_keys: { context: '../x' } } }], /local_keys/],
  ])('refuses %s, leaves no generation, and serves the next build', async (_n, msgs, expected) => {
    const res = await rawBuild(msgs());
    expect(res).toBeInstanceOf(BuildError);
    expect((res as BuildError).message).toMatch(expected);
    await waitFor('the build to settle', async () => (service.runningBuilds() === 0 ? true : undefined));
    expect((await store()).list().some((k) => k.key === storeKey('', 'k-hostile'))).toBe(false);
    const keyDir = path.join(tmp, 'root', 'locals', storeKey('', 'k-hostile'));
    expect((await fsp.readdir(keyDir).catch(() => [])).filter((n) => n.startsWith('tmp-') || n.startsWith('gen-'))).toEqual([]);
    expect(await build()).toMatchObject({ files: expect.any(Number) });
    expect(builder.trees.at(-1)?.['context']).toEqual(await describeTree(ctx));
  });
});
