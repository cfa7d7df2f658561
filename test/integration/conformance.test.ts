import { execFile, spawn } from 'node:child_process';
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { EmbeddedRegistry } from '../../buildd/registry/embedded-registry';
import { startRegistryServer } from '../../buildd/registry/registry-server';
import { LocalContentStore } from '../../store/content-store';
import { runBuildctl, startDaemon, TestDaemon } from '../helpers/daemon';
import { SHARED_CONFORMANCE as CONFORMANCE } from '../helpers/shared-conformance';

const run = promisify(execFile);

/** Runs a command to its end and gives its exit status and both outputs, whatever the status. */
function runAll(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
const REPO = path.resolve(__dirname, '..', '..');

const REFERENCE = path.join(CONFORMANCE, 'reference.sh');

const SHARED_CASES_DIR = path.join(CONFORMANCE, 'cases');
const OWN_CASES_DIR = path.join(REPO, 'test', 'conformance', 'cases');

/** What run.sh left for a case that was not `same`: its diff, else the tail of its build logs. */
function caseDetail(outDir: string, line: string): string {
  const name = line.slice(0, line.indexOf(':'));
  const read = (f: string): string => {
    try {
      return readFileSync(path.join(outDir, name, f), 'utf8');
    } catch {
      return '';
    }
  };
  const diff = read('diff.txt');
  if (diff !== '') return diff.slice(0, 8000);
  return ['reference.log', 'candidate.log'].map((f) => `${f}:\n${read(f).slice(-4000)}`).join('\n');
}

async function referenceRunning(): Promise<boolean> {
  try {
    const { stdout } = await run('bash', [REFERENCE, 'env']);
    const sock = /DOCKER_HOST=unix:\/\/(\S+)/.exec(stdout)?.[1];
    if (!sock || !existsSync(sock)) return false;
    await run('docker', ['-H', `unix://${sock}`, 'info'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

describe('conformance with BuildKit (../shared/conformance/run.sh)', () => {
  let daemon: TestDaemon;
  let startedReference = false;

  beforeAll(async () => {
    if (!existsSync(REFERENCE)) throw new Error(`Cannot run conformance: ${REFERENCE} is missing (../shared must sit beside the project)`);
    startedReference = !(await referenceRunning());
    // Idempotent: starts what is missing. --debian: the shared v08 case builds on a Debian base.
    await run('bash', [REFERENCE, 'start', '--debian'], { timeout: 900_000, maxBuffer: 16 * 1024 * 1024 });
    daemon = await startDaemon({ builder: 'real' });
  }, 1_200_000);

  afterAll(async () => {
    await daemon?.stop();
    if (startedReference) await run('bash', [REFERENCE, 'stop']);
  });

  test('every shared case and every case of our own builds the same image as BuildKit', async () => {
    const cases = [
      ...readdirSync(SHARED_CASES_DIR).sort().map((c) => path.join(SHARED_CASES_DIR, c)),
      ...readdirSync(OWN_CASES_DIR).sort().map((c) => path.join(OWN_CASES_DIR, c)),
    ];
    const buildctl = `${process.execPath} ${path.join(REPO, 'dist', 'buildctl', 'main.js')} --addr ${daemon.addr} --tlsdir ${path.join(daemon.certsDir as string, 'client')}`;
    const outDir = path.join(daemon.root, '..', 'conformance-out');
    const out = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn('bash', [path.join(CONFORMANCE, 'run.sh'), ...cases], {
        env: { ...process.env, BUILDCTL: buildctl, OUT: outDir },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout }));
    });
    const lines = out.stdout.split('\n').filter((l) => /^[\w-]+: /.test(l));
    // A case that differs carries its diff.txt (or build log) into the failure message: CI keeps
    // no files, and a difference seen once must say what it was.
    const detailed = lines.map((l) => (l.endsWith(': same') ? l : `${l}\n${caseDetail(outDir, l)}`));
    expect(detailed).toEqual(cases.map((c) => `${path.basename(c)}: same`));
    expect(out.code).toBe(0);
    // run.sh does not compare history; BuildKit writes it and `docker history` shows it.
    // A pass is exit status 0 with nothing printed: a crash of the script is a failure too.
    const history = await runAll('python3', [path.join(REPO, 'test', 'conformance', 'history-diff.py'), outDir, ...cases.map((c) => path.basename(c))]);
    expect(history).toEqual({ code: 0, stdout: '', stderr: '' });
  }, 900_000);

  test('a --output type=docker archive loads into the reference dockerd with `docker load`', async () => {
    const dir = path.join(CONFORMANCE, 'cases', 'v01-basics');
    const archive = path.join(daemon.root, '..', 'v01.docker.tar');
    const name = 'buildd-conformance/loaded:v01';
    const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${dir}`, '--local', `dockerfile=${dir}`, '--output', `type=docker,dest=${archive},name=${name}`]);
    expect(res.code).toBe(0);
    const { stdout: hostLine } = await run('bash', [REFERENCE, 'env']);
    const dockerHost = (/DOCKER_HOST=(\S+)/.exec(hostLine) as RegExpExecArray)[1];
    const docker = (...args: string[]) => run('docker', ['-H', dockerHost, ...args]);
    const { stdout: loaded } = await docker('load', '-i', archive);
    expect(loaded).toContain(name);
    try {
      const { stdout } = await docker('image', 'inspect', name, '--format', '{{json .Config.Cmd}} {{.Config.WorkingDir}} {{.Config.User}}');
      expect(stdout.trim()).toBe('["-c","cat note.txt"] /opt/app 1000:1000');
    } finally {
      await docker('rmi', name).catch(() => undefined);
    }
  }, 120_000);

  test('a layer whose random data is stored in gzip members of its own loads into dockerd (Go\'s gzip reader) and reads back whole', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-random-layer-'));
    const archive = path.join(dir, 'random.docker.tar');
    const name = 'buildd-conformance/random:1';
    const { stdout: hostLine } = await run('bash', [REFERENCE, 'env']);
    const dockerHost = (/DOCKER_HOST=(\S+)/.exec(hostLine) as RegExpExecArray)[1];
    const docker = (...args: string[]) => run('docker', ['-H', dockerHost, ...args]);
    try {
      await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM localhost:5000/busybox:latest\nRUN head -c 1000000 /dev/urandom > /random && sha256sum /random > /random.sha\n');
      const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
        '--local', `context=${dir}`, '--local', `dockerfile=${dir}`, '--output', `type=docker,dest=${archive},name=${name}`]);
      expect(res.code).toBe(0);
      const { stdout: loaded } = await docker('load', '-i', archive);
      expect(loaded).toContain(name);
      // dockerd checked each layer against its diff ID as it unpacked it; the file is whole
      const { stdout } = await docker('run', '--rm', '--network=none', name, 'sha256sum', '-c', '/random.sha');
      expect(stdout.trim()).toBe('/random: OK');
    } finally {
      await docker('rmi', '-f', name).catch(() => undefined);
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test('docker push and docker pull through the reference dockerd: the embedded registry gives back the very image', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-docker-interop-'));
    const content = await LocalContentStore.open(path.join(tmp, 'content'));
    const registry = await startRegistryServer({ addr: '127.0.0.1:0', registry: await EmbeddedRegistry.open(path.join(tmp, 'registry'), content), logger: pino({ level: 'silent' }) });
    const { stdout: hostLine } = await run('bash', [REFERENCE, 'env']);
    const dockerHost = (/DOCKER_HOST=(\S+)/.exec(hostLine) as RegExpExecArray)[1];
    const docker = (...args: string[]) => run('docker', ['-H', dockerHost, ...args]);
    // dockerd takes 127.0.0.0/8 as an insecure registry: plain HTTP, as the registry speaks
    const name = `${registry.address}/interop/busybox:1`;
    try {
      await docker('pull', '-q', 'localhost:5000/busybox:latest');
      const { stdout: id } = await docker('image', 'inspect', 'localhost:5000/busybox:latest', '--format', '{{.Id}}');
      await docker('tag', 'localhost:5000/busybox:latest', name);
      await docker('push', '-q', name);
      await docker('rmi', name);
      await docker('pull', '-q', name);
      // the image ID is the config's digest, and the config names every layer by its diff ID
      const { stdout: pulled } = await docker('image', 'inspect', name, '--format', '{{.Id}}');
      expect(pulled.trim()).toBe(id.trim());
      const { stdout: raw } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
      expect(JSON.parse(raw).mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    } finally {
      await docker('rmi', name).catch(() => undefined);
      await registry.stop();
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
