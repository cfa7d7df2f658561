import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { flattenImage } from '../conformance/harness/flatten-image';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { RunResult, startDaemon, TestDaemon } from '../helpers/daemon';
import { startRegistry, TestRegistry } from '../helpers/registry';
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

/**
 * Whether a thread of `pid` waits in open(2) of a FIFO for its reader: a mkfile onto a FIFO
 * in the layer under it holds there, with everything it holds, until the test reads the FIFO.
 */
async function blockedOnFifo(pid: number): Promise<boolean> {
  const tasks = await fsp.readdir(`/proc/${pid}/task`);
  for (const tid of tasks) {
    const wchan = await fsp.readFile(`/proc/${pid}/task/${tid}/wchan`, 'utf8').catch(() => '');
    if (wchan === 'wait_for_partner') return true;
  }
  return false;
}

/** The local port of the TCP connection process `pid` holds (buildctl has one, to the daemon). */
async function clientPort(pid: number): Promise<string> {
  const { stdout } = await run('ss', ['-tnpH']);
  const line = stdout.split('\n').find((l) => l.includes(`pid=${pid},`));
  const port = line?.trim().split(/\s+/)[3]?.split(':').pop();
  if (port === undefined) throw new Error(`Cannot find the connection of process ${pid}: ${stdout}`);
  return port;
}

/** Whether process `pid` still has a socket whose peer is 127.0.0.1:`port` (any state). */
async function holdsConnectionFrom(pid: number, port: string): Promise<boolean> {
  const { stdout } = await run('ss', ['-tanpH']);
  return stdout.split('\n').some((l) => l.includes(`pid=${pid},`) && l.trim().split(/\s+/)[4] === `127.0.0.1:${port}`);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

describe('a COPY from the context, shared by two builds of different context dirs with the same content', () => {
  let tmp: string;
  let root: string;
  let daemon: TestDaemon;
  let gates: Gates;
  let registry: TestRegistry;
  let busybox: string;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-shared-'));
    root = path.join(tmp, 'root');
    // One step slot: a build holding it on a gate keeps every other step waiting for it.
    const config = path.join(tmp, 'buildd.json');
    await fsp.writeFile(config, JSON.stringify({ maxParallelism: 1 }));
    gates = await startGates();
    registry = await startRegistry();
    busybox = (await pushBusyboxImage(registry.host)).ref;
    daemon = await startDaemon({ builder: 'real', root, extraArgs: ['--config', config, '--debug'] });
  }, 120_000);

  afterAll(async () => {
    // A test that failed may leave a step holding on its FIFO: a reader lets it go on.
    if (root) for (const fifo of await heldFifos()) await (await fsp.open(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK)).close();
    await daemon?.stop();
    await gates?.close();
    await registry?.stop();
    if (root) for (const m of await mountsUnder(root)) await run('umount', ['-l', m]);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  }, 60_000);

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
    const { files } = await flattenImage(out);
    expect(files['data-1']).toMatchObject({ type: 'file', sha256: sha256(data) });
    expect(daemonLog(daemon).filter((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step)).toHaveLength(1);

    await waitFor('every session dir to be removed', async () => ((await sessions()).length === 0 ? true : undefined));
    expect((await fsp.readdir(path.join(root, 'tmp'))).filter((f) => f.startsWith('scratch-'))).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
  }, 120_000);

  /** The FIFOs `/x/held` in the layers COPYs write (active snapshots mounted under the root). */
  async function heldFifos(): Promise<string[]> {
    const found: string[] = [];
    for (const m of await mountsUnder(root)) {
      const st = await fsp.lstat(path.join(m, 'x', 'held')).catch(() => undefined);
      if (st?.isFIFO()) found.push(path.join(m, 'x', 'held'));
    }
    return found;
  }

  /** The one FIFO a running COPY holds on. */
  async function heldFifo(): Promise<string> {
    const found = await heldFifos();
    expect(found).toHaveLength(1);
    return found[0];
  }

  /** Reads the FIFO the COPY writes: its mkfile returns, and the step goes on. */
  async function release(fifo: string): Promise<string> {
    const { stdout } = await run('cat', [fifo]);
    return stdout;
  }

  test('cancelling the build whose context a running step has read: its build ends only once the step stopped, the other finishes it from its own context', async () => {
    const pid = daemon.process.pid as number;
    const data = `read by a running step ${Date.now()}\n`;
    // The COPY's actions run in order: `data` from the context, then the heredoc `held` onto
    // the FIFO the RUN made, which holds the step (open(2) waits for a reader) with the
    // owner's context read and the slot taken, then `after`, behind the step's abort check.
    const dockerfile = `FROM ${busybox}\nRUN mkdir /x && mkfifo /x/held\nCOPY data <<held <<after /x/\nfirst\nheld\nsecond\nafter\n`;
    const ctxA = await writeContext(path.join(tmp, 'a3'), { data, Dockerfile: dockerfile });
    const ctxB = await writeContext(path.join(tmp, 'b3'), { data, Dockerfile: dockerfile });

    const before = await sessions();
    const a = startBuild(daemon, ctxA);
    await waitFor('the COPY of the first build to hold on the FIFO', async () => ((await blockedOnFifo(pid)) ? true : undefined));
    const aSession = (await sessions()).filter((s) => !before.includes(s));
    expect(aSession).toHaveLength(1);
    const firstFifo = await heldFifo();
    // The step has copied the owner's `data` already: it read that build's context.
    expect(await fsp.readFile(path.join(path.dirname(firstFifo), 'data'), 'utf8')).toBe(data);
    const step = (daemonLog(daemon).find((l) => l['msg'] === 'a build waits on a shared step' && String(l['step']).includes('<<held'))?.['step']) as string;
    expect(step).toMatch(/COPY data <<held <<after \/x\//);

    const out = path.join(tmp, 'b3.oci.tar');
    const b = startBuild(daemon, ctxB, ['--output', `type=oci,dest=${out}`]);
    await waiting(step, 2);

    const port = await clientPort(a.child.pid as number);
    a.child.kill('SIGKILL');
    await a.done;
    // The daemon has closed its end of the killed client's connection: it has seen the build cancelled.
    await waitFor('the daemon to drop the connection of the killed client', async () => ((await holdsConnectionFrom(pid, port)) ? undefined : true));
    // The step still holds, and so does the context it was started with.
    expect(await blockedOnFifo(pid)).toBe(true);
    expect(await sessions()).toContain(aSession[0]);
    expect(daemonLog(daemon).filter((l) => l['build'] === aSession[0] && l['msg'] === 'build failed')).toEqual([]);

    expect(await release(firstFifo)).toBe('first\n');
    await waitFor('the step to restart with the context of the second build', async () =>
      daemonLog(daemon).some((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step) ? true : undefined,
    );
    // The second attempt writes a new layer onto the same base: it holds on its own FIFO.
    await waitFor('the second attempt to hold on the FIFO', async () => ((await blockedOnFifo(pid)) ? true : undefined));
    expect(await release(await heldFifo())).toBe('first\n');
    const second = await b.done;
    expect({ code: second.code, stderr: second.code === 0 ? '' : second.stderr }).toEqual({ code: 0, stderr: '' });
    const { files } = await flattenImage(out);
    expect(files['x/data']).toMatchObject({ type: 'file', sha256: sha256(data) });
    expect(files['x/after']).toMatchObject({ type: 'file', sha256: sha256('second\n') });

    // The cancelled build ended after the step it lent its context to had stopped (and restarted).
    const log = daemonLog(daemon);
    const restarted = log.findIndex((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step);
    const aEnded = log.findIndex((l) => l['build'] === aSession[0] && l['msg'] === 'build failed');
    expect(log[aEnded]).toMatchObject({ code: 'cancelled', err: 'Cannot continue: the client went away' });
    expect(aEnded).toBeGreaterThan(restarted);
    expect(log.filter((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step)).toHaveLength(1);

    await waitFor('every session dir to be removed', async () => ((await sessions()).length === 0 ? true : undefined));
    expect(await mountsUnder(root)).toEqual([]);
  }, 180_000);

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
    expect(again.stderr).toMatch(/\[1\/1\] COPY data \/data-2\n(#\d+ cache miss: .*\n)?#\d+ DONE/);
    expect(daemonLog(daemon).filter((l) => l['msg'] === 'a shared step restarts with the context of another build' && l['step'] === step)).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
  }, 120_000);
});
