import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { RunResult, startDaemon, TestDaemon } from '../helpers/daemon';
import { IMGDIFF } from '../helpers/shared-conformance';
import { mountsUnder } from '../helpers/store-mounts';
import { waitFor } from '../helpers/wait-for';
import { writeContext } from '../helpers/build-env';

const run = promisify(execFile);
const DIST = path.resolve(__dirname, '..', '..', 'dist');

/**
 * An HTTP server on loopback whose answers the test releases: a build that ADDs one of its
 * URLs with --checksum downloads it while it holds a step slot, so with a daemon of one slot
 * the test decides exactly when every other step may run. Lifecycle: `startGates` in
 * beforeAll, `close` in afterAll.
 */
interface Gates {
  url(name: string): string;
  /** the content a gate answers with, for ADD --checksum */
  body(name: string): string;
  /** resolves once a request for the gate has arrived (and is held) */
  requested(name: string): Promise<void>;
  release(name: string): void;
  close(): Promise<void>;
}

async function startGates(): Promise<Gates> {
  const held = new Map<string, http.ServerResponse>();
  const released = new Set<string>();
  const body = (name: string): string => `gate ${name}\n`;
  const server = http.createServer((req, res) => {
    const name = (req.url ?? '').replace(/^\/gate\//, '');
    if (released.has(name)) res.end(body(name));
    else held.set(name, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (name) => `http://127.0.0.1:${port}/gate/${name}`,
    body,
    requested: (name) => waitFor(`the daemon to request gate ${name}`, async () => (held.has(name) ? true : undefined)).then(() => undefined),
    release: (name) => {
      released.add(name);
      held.get(name)?.end(body(name));
      held.delete(name);
    },
    close: async () => {
      for (const res of held.values()) res.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A buildctl process the test can kill, as a client that goes away. */
interface RunningBuild {
  child: ChildProcess;
  done: Promise<RunResult>;
}

function startBuild(daemon: TestDaemon, context: string, extra: string[] = []): RunningBuild {
  const args = [
    path.join(DIST, 'buildctl', 'main.js'),
    '--addr', daemon.addr,
    '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${context}`, '--local', `dockerfile=${context}`, '--progress', 'plain',
    ...extra,
  ];
  const child = spawn(process.execPath, args, { env: { PATH: process.env['PATH'] }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => out.push(d));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString(), stdoutBytes, stderr });
    });
  });
  return { child, done };
}

/** The daemon's JSON log lines (it runs with --debug). */
function daemonLog(daemon: TestDaemon): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of daemon.stderr().split('\n')) {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return lines;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

describe('a COPY from the context, shared by two builds of different context dirs with the same content', () => {
  let tmp: string;
  let root: string;
  let daemon: TestDaemon;
  let gates: Gates;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-shared-'));
    root = path.join(tmp, 'root');
    // One step slot: a build holding it on a gate keeps every other step waiting for it.
    const config = path.join(tmp, 'buildd.json');
    await fsp.writeFile(config, JSON.stringify({ maxParallelism: 1 }));
    gates = await startGates();
    daemon = await startDaemon({ builder: 'real', root, extraArgs: ['--config', config, '--debug'] });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await gates?.close();
    if (root) for (const m of await mountsUnder(root)) await run('umount', ['-l', m]);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  const sessions = async (): Promise<string[]> => (await fsp.readdir(path.join(root, 'sessions')).catch(() => [] as string[])).sort();

  /** Starts a build that holds the daemon's only step slot until the gate is released. */
  async function holdTheSlot(name: string): Promise<RunningBuild> {
    const ctx = await writeContext(path.join(tmp, `blocker-${name}`), {
      Dockerfile: `FROM scratch\nADD --checksum=sha256:${sha256(gates.body(name))} ${gates.url(name)} /gate\n`,
    });
    const blocker = startBuild(daemon, ctx);
    await gates.requested(name);
    return blocker;
  }

  /** Resolves once `builds` builds wait on the shared step named `step`. */
  function waiting(step: string, builds: number): Promise<true> {
    return waitFor(`${builds} build(s) to wait on ${step}`, async () =>
      daemonLog(daemon).some((l) => l['msg'] === 'a build waits on a shared step' && l['step'] === step && l['builds'] === builds) ? true : undefined,
    );
  }

  /** A context dir whose Dockerfile copies its `data` file to `dest`. */
  function copyContext(dir: string, data: string, dest: string): Promise<string> {
    return writeContext(path.join(tmp, dir), { data, Dockerfile: `FROM scratch\nCOPY data ${dest}\n` });
  }

  test('cancelling the build whose context the step reads leaves the other build to finish it from its own context', async () => {
    const data = `shared content ${Date.now()}\n`;
    const ctxA = await copyContext('a1', data, '/data-1');
    const ctxB = await copyContext('b1', data, '/data-1');
    const step = '[1/1] COPY data /data-1';
    const blocker = await holdTheSlot('g1');

    const before = await sessions();
    const a = startBuild(daemon, ctxA);
    await waiting(step, 1);
    const aSession = (await sessions()).filter((s) => !before.includes(s));
    expect(aSession).toHaveLength(1);
    const out = path.join(tmp, 'b1.oci.tar');
    const b = startBuild(daemon, ctxB, ['--output', `type=oci,dest=${out}`]);
    await waiting(step, 2);

    // The client of the build whose context the shared COPY was started with goes away.
    a.child.kill('SIGKILL');
    await a.done;
    await waitFor('the first build to be settled and its context removed', async () => ((await sessions()).includes(aSession[0]) ? undefined : true));

    gates.release('g1');
    expect((await blocker.done).code).toBe(0);
    const second = await b.done;
    expect({ code: second.code, stderr: second.code === 0 ? '' : second.stderr }).toEqual({ code: 0, stderr: '' });
    const { stdout } = await run('python3', [IMGDIFF, 'flatten', out], { maxBuffer: 64 * 1024 * 1024 });
    const files = (JSON.parse(stdout) as { files: Record<string, { type: string; sha256?: string }> }).files;
    expect(files['data-1']).toMatchObject({ type: 'file', sha256: sha256(data) });
    expect(daemonLog(daemon).filter((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step)).toHaveLength(1);

    await waitFor('every session dir to be removed', async () => ((await sessions()).length === 0 ? true : undefined));
    expect((await fsp.readdir(path.join(root, 'tmp'))).filter((f) => f.startsWith('scratch-'))).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
  }, 120_000);

  test('cancelling the only build that waits on the step cancels the step', async () => {
    const data = `alone ${Date.now()}\n`;
    const ctxA = await copyContext('a2', data, '/data-2');
    const step = '[1/1] COPY data /data-2';
    const blocker = await holdTheSlot('g2');
    const a = startBuild(daemon, ctxA);
    await waiting(step, 1);
    a.child.kill('SIGKILL');
    await a.done;
    await waitFor('the step to be cancelled', async () =>
      daemonLog(daemon).some((l) => l['msg'] === 'a shared step is cancelled: no build waits on it' && l['step'] === step) ? true : undefined,
    );
    gates.release('g2');
    expect((await blocker.done).code).toBe(0);
    await waitFor('every session dir to be removed', async () => ((await sessions()).length === 0 ? true : undefined));
    // The cancelled COPY left no cache record: the same build again runs it.
    const again = await startBuild(daemon, ctxA).done;
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/\[1\/1\] COPY data \/data-2\n#\d+ DONE/);
    expect(daemonLog(daemon).filter((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step)).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
  }, 120_000);
});
