import { createHash, randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { statusToBuildError } from '../../../buildd/api/grpc-status';
import { loadControlApi } from '../../../buildd/api/load-proto';
import { BuildService } from '../../../buildd/build-service';
import type { Builder, BuildRequest, BuildSession, ExporterResponse } from '../../../buildd/builder';
import { PlainRenderer } from '../../../buildctl/progress-plain';
import { runBuild } from '../../../buildctl/run-build';
import { BuildError } from '../../../solver/build-error';
import { waitFor } from '../../helpers/wait-for';

/** What a local directory looked like to the builder: one line per entry, lstat only. */
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

/** A builder that records what it received and does what the test tells it. */
class RecordingBuilder implements Builder {
  requests: BuildRequest[] = [];
  trees: Record<string, string[]>[] = [];
  signals: AbortSignal[] = [];
  behave: (req: BuildRequest, s: BuildSession) => Promise<ExporterResponse> = async () => ({});
  async build(req: BuildRequest, s: BuildSession): Promise<ExporterResponse> {
    this.requests.push(req);
    this.signals.push(s.signal);
    const trees: Record<string, string[]> = {};
    for (const [name, dir] of Object.entries(req.locals)) trees[name] = await describeTree(dir);
    this.trees.push(trees);
    return this.behave(req, s);
  }
  async close(): Promise<void> {}
}

describe('BuildService', () => {
  let tmp: string;
  let server: grpc.Server;
  let client: grpc.Client;
  let service: BuildService;
  const builder = new RecordingBuilder();

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-service-'));
    service = new BuildService({ builder, root: path.join(tmp, 'root'), logger: pino({ level: 'silent' }) });
    server = new grpc.Server();
    server.addService(loadControlApi().service, service.handlers());
    const sock = path.join(tmp, 'b.sock');
    await new Promise<void>((res, rej) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    client = new (loadControlApi().Client)(`unix://${sock}`, grpc.credentials.createInsecure());
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

  const sessions = async (): Promise<string[]> => fsp.readdir(path.join(tmp, 'root', 'sessions')).catch(() => []);

  it('receives the locals exactly: modes, mtimes, symlinks kept as symlinks, .dockerignore applied, only the Dockerfile of its dir', async () => {
    const ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(path.join(ctx, 'sub', 'deep'), { recursive: true });
    await fsp.mkdir(path.join(ctx, 'ignored'), { recursive: true });
    await fsp.writeFile(path.join(ctx, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    await fsp.chmod(path.join(ctx, 'run.sh'), 0o755);
    await fsp.writeFile(path.join(ctx, 'sub', 'deep', 'big.bin'), Buffer.alloc(2.5 * 1024 * 1024, 7));
    await fsp.writeFile(path.join(ctx, 'empty'), '');
    await fsp.writeFile(path.join(ctx, 'debug.log'), 'noise');
    await fsp.writeFile(path.join(ctx, 'ignored', 'drop.txt'), 'x');
    await fsp.writeFile(path.join(ctx, 'ignored', 'keep.txt'), 'kept');
    await fsp.symlink('/etc/passwd', path.join(ctx, 'passwd'));
    await fsp.symlink('sub', path.join(ctx, 'sublink'));
    await fsp.writeFile(path.join(ctx, '.dockerignore'), '*.log\nignored\n!ignored/keep.txt\n');
    await fsp.chmod(path.join(ctx, 'sub'), 0o750);
    await fsp.utimes(path.join(ctx, 'run.sh'), 1_600_000_000, 1_600_000_000);
    await fsp.utimes(path.join(ctx, 'sub'), 1_500_000_000, 1_500_000_000);
    const dfDir = path.join(tmp, 'df');
    await fsp.mkdir(dfDir);
    await fsp.writeFile(path.join(dfDir, 'Dockerfile'), 'FROM scratch\n');
    await fsp.writeFile(path.join(dfDir, 'x.log'), 'not ignored: not the context');

    const exportBytes = Buffer.alloc(3 * 1024 * 1024 + 5);
    for (let i = 0; i < exportBytes.length; i++) exportBytes[i] = i % 251;
    builder.behave = async (_req, s) => {
      s.progress({ type: 'vertex', digest: 'v1', name: '[1/1] RUN echo hi', started: 1, cached: false });
      s.progress({ type: 'log', vertex: 'v1', stream: 1, data: Buffer.from('hi\n') });
      s.progress({ type: 'vertex', digest: 'v1', name: '[1/1] RUN echo hi', started: 1, completed: 2, cached: false });
      const w = s.exportStream();
      await new Promise<void>((res, rej) => w.end(exportBytes, () => res()).once('error', rej));
      return { 'containerimage.digest': 'sha256:abc' };
    };
    const sink = new PassThrough();
    const received: Buffer[] = [];
    sink.on('data', (d: Buffer) => received.push(d));
    const progressOut = { text: '', write: (s: string) => void (progressOut.text += s), now: () => 1000 };
    const response = await runBuild(client, {
      frontend: 'dockerfile.v0',
      frontendAttrs: { filename: 'Dockerfile', 'build-arg:A': '1' },
      locals: { context: ctx, dockerfile: dfDir },
      outputs: [{ type: 'oci', attrs: { name: 'x' }, dest: 'out.tar' }],
      noCache: true,
      progress: new PlainRenderer(progressOut),
      openDest: () => sink,
    });

    expect(response).toEqual({ 'containerimage.digest': 'sha256:abc' });
    expect(Buffer.concat(received).equals(exportBytes)).toBe(true);
    expect(progressOut.text).toContain('#1 [1/1] RUN echo hi\n');
    expect(progressOut.text).toContain('#1 DONE 0.0s\n');
    const req = builder.requests.at(-1) as BuildRequest;
    expect(req).toMatchObject({
      frontend: 'dockerfile.v0',
      frontendAttrs: { filename: 'Dockerfile', 'build-arg:A': '1' },
      exports: [{ type: 'oci', attrs: { name: 'x' } }],
      noCache: true,
    });
    const tree = builder.trees.at(-1) as Record<string, string[]>;
    expect(tree['context']).toEqual(await describeTree(ctx).then((all) => all.filter((l) => !/debug\.log|drop\.txt/.test(l))));
    expect(tree['context']).toContain('L passwd -> /etc/passwd');
    expect(tree['context']).toContain('L sublink -> sub');
    expect(tree['context']).toContain('D sub 750 1500000000000');
    expect(tree['context']?.some((l) => l.startsWith('F run.sh 755 18 '))).toBe(true);
    // Of the dockerfile dir only the Dockerfile travels, as BuildKit's frontend asks for just it.
    expect(tree['dockerfile']).toEqual((await describeTree(dfDir)).filter((l) => l.startsWith('F Dockerfile ')));
    await waitFor('the session dir to be removed', async () => ((await sessions()).length === 0 ? true : undefined));
  });

  /** Sends raw messages, then reads the call's end. */
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
  const start = { start: { frontend: 'f', frontend_attrs: {}, local_names: ['context'], exports: [], no_cache: false } };
  const entry = (p: string, extra: object = {}) => ({
    entry: { local: 'context', path: p, type: 'FILE', mode: 0o644, uid: 0, gid: 0, mtime_ms: 0, link_target: '', size: 0, ...extra },
  });

  // Targets outside the session for the symlink cases, unique to this run: were the receiver
  // to follow a link, it would write here, and a leftover could not fool a later run.
  let outside: string;
  let pwned: string;
  beforeAll(async () => {
    outside = path.join(tmp, `outside-${randomUUID()}`);
    pwned = path.join(outside, 'pwned');
    await fsp.mkdir(outside);
  });

  it.each<[string, () => object[], RegExp]>([
    ['no start message', () => [entry('a')], /first message is entry/],
    ['a path with ..', () => [start, entry('../escape')], /entry\.path: Path has an empty, "\." or "\.\." component/],
    ['an absolute path', () => [start, entry('/etc/x')], /Path is absolute/],
    ['a NUL in a path', () => [start, entry('a\0b')], /Path contains NUL/],
    ['an undeclared local', () => [start, { entry: { ...entry('a').entry, local: 'other' } }], /was not declared/],
    ['an entry under a symlinked dir', () => [start, entry('l', { type: 'SYMLINK', link_target: outside }), entry('l/x')], /its parent is a symlink/],
    ['an entry under a symlink pointing inside', () => [start, entry('d', { type: 'DIR', mode: 0o755 }), entry('l', { type: 'SYMLINK', link_target: 'd' }), entry('l/x')], /its parent is a symlink/],
    ['a file over a symlink', () => [start, entry('l', { type: 'SYMLINK', link_target: pwned }), entry('l')], /sent twice/],
    ['an entry before its parent', () => [start, entry('nodir/x')], /parent directory was not sent/],
    ['more data than the size', () => [start, entry('a', { size: 1 }), { data: { data: Buffer.from('ab') } }], /more data than its size 1/],
    ['less data than the size', () => [start, entry('a', { size: 5 }), { data: { data: Buffer.from('ab') } }, { locals_done: {} }], /got 2 of its 5 bytes/],
    ['data without a file', () => [start, { data: { data: Buffer.from('x') } }], /file data without a file entry/],
    ['a stream that ends early', () => [start, entry('a')], /ended before locals_done/],
    ['a mode out of range', () => [start, entry('a', { mode: 0o100644 })], /entry\.mode/],
    ['an empty message', () => [start, {}], /Cannot accept a message/],
  ])('fails the build on %s before the builder runs, leaves the link targets outside untouched, removes the session and keeps serving', async (_name, msgs, expected) => {
    await expect(fsp.lstat(pwned)).rejects.toMatchObject({ code: 'ENOENT' });
    const calls = builder.requests.length;
    const res = await rawBuild(msgs());
    expect(res).toBeInstanceOf(BuildError);
    expect((res as BuildError).code).toBe('invalid-argument');
    expect((res as BuildError).message).toMatch(expected);
    expect(builder.requests.length).toBe(calls);
    await expect(fsp.lstat(pwned)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fsp.readdir(outside)).toEqual([]);
    await waitFor('the session dir to be removed', async () => ((await sessions()).length === 0 ? true : undefined));
    await expect(rawBuild([start, { locals_done: {} }])).resolves.toBe('ok');
    expect(builder.requests.length).toBe(calls + 1);
  });

  it('returns the build error with its code, message, vertex and exit code', async () => {
    builder.behave = async () => {
      throw new BuildError('failed-precondition', 'process "/bin/sh -c false" did not complete successfully', { vertex: 'sha256:v', exitCode: 3 });
    };
    const res = await rawBuild([start, { locals_done: {} }]);
    expect(res).toBeInstanceOf(BuildError);
    expect(res).toMatchObject({
      code: 'failed-precondition',
      message: 'process "/bin/sh -c false" did not complete successfully',
      vertex: 'sha256:v',
      exitCode: 3,
    });
  });

  it('aborts the session signal when the client goes away, and removes the session', async () => {
    let release: () => void = () => undefined;
    const aborted = new Promise<void>((res) => (release = res));
    builder.behave = (_req, s) =>
      new Promise((_res, rej) => {
        const onAbort = (): void => {
          release();
          rej(s.signal.reason);
        };
        if (s.signal.aborted) onAbort();
        else s.signal.addEventListener('abort', onAbort);
      });
    const call = (client as unknown as { Build(): grpc.ClientDuplexStream<object, unknown> }).Build();
    call.on('error', () => undefined);
    call.write(start);
    call.write({ locals_done: {} });
    const before = builder.signals.length;
    await waitFor('the build to run', async () => (builder.signals.length > before ? true : undefined));
    const signal = builder.signals.at(-1) as AbortSignal;
    expect(signal.aborted).toBe(false);
    expect(await sessions()).toHaveLength(1);
    call.cancel();
    await aborted;
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(BuildError);
    expect(signal.reason).toMatchObject({ code: 'cancelled', message: 'Cannot continue: the client went away' });
    await waitFor('the build to settle', async () => (service.runningBuilds() === 0 ? true : undefined));
    expect(await sessions()).toEqual([]);
  });

  it('shutdown lets running builds finish within the grace period, cancels the rest, then refuses new ones', async () => {
    let finish!: () => void;
    const finishing = new Promise<void>((resolve) => (finish = resolve));
    // the first build ends when told; the second never ends by itself
    let n = 0;
    builder.behave = (_req, s) => {
      n += 1;
      if (n === 1) return finishing.then(() => ({ 'containerimage.digest': 'sha256:done' }));
      return new Promise((_res, rej) => {
        if (s.signal.aborted) rej(s.signal.reason);
        else s.signal.addEventListener('abort', () => rej(s.signal.reason));
      });
    };
    const before = builder.signals.length;
    const finished = rawBuild([start, { locals_done: {} }]);
    await waitFor('the first build to run', async () => (builder.signals.length > before ? true : undefined));
    const cancelled = rawBuild([start, { locals_done: {} }]);
    await waitFor('the second build to run', async () => (builder.signals.length > before + 1 ? true : undefined));
    const stopped = service.shutdown(1500);
    // draining: a new build is refused at once while the running ones go on
    await expect(rawBuild([start, { locals_done: {} }])).resolves.toMatchObject({
      code: 'unavailable',
      message: 'Cannot start a build: the daemon is shutting down (running builds are finishing); retry on another instance or after the restart',
    });
    expect(builder.signals.at(-1)?.aborted).toBe(false);
    finish();
    await expect(finished).resolves.toBe('ok');
    await stopped;
    expect(service.runningBuilds()).toBe(0);
    await expect(cancelled).resolves.toMatchObject({ code: 'cancelled', message: 'Cannot continue: the daemon is shutting down and its grace period of 1.5s is over' });
  });
});
