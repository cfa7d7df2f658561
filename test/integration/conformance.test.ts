import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { EmbeddedRegistry } from '../../buildd/registry/embedded-registry';
import { startRegistryServer } from '../../buildd/registry/registry-server';
import { LocalContentStore } from '../../store/content-store';
import { listCases, needsDebian, OWN_CASES_DIR, SHARED_CONFORMANCE_DIR, sharedCasesDir } from '../conformance/harness/case-dirs';
import { runCase, summaryLine, type CaseResult } from '../conformance/harness/case-runner';
import { DOCKER, startReferenceWorld, type ReferenceWorld } from '../conformance/harness/reference-world';
import { mustRun } from '../conformance/harness/run-command';
import { runBuildctl, startDaemon, TestDaemon } from '../helpers/daemon';

const REPO = path.resolve(__dirname, '..', '..');
const OWN_CASES = listCases(OWN_CASES_DIR);
/** The shared kit's cases where ../shared/conformance sits beside the repository; optional. */
const SHARED_CASES_DIR = sharedCasesDir();
const SHARED_CASES = SHARED_CASES_DIR ? listCases(SHARED_CASES_DIR) : [];

/** A result as one line, with what a person needs when it is not `same`: CI keeps no files. */
const reported = (r: CaseResult): string => (r.outcome === 'same' ? summaryLine(r) : `${summaryLine(r)}\n${r.detail}`);

describe('conformance with BuildKit (test/conformance/harness: the reference builder inside Debian\'s dockerd)', () => {
  let world: ReferenceWorld;
  let daemon: TestDaemon;
  let outDir: string;

  beforeAll(async () => {
    // Starts what is not already serving (minutes the first time on a machine: debootstrap), and
    // release() stops only that. The Debian base is needed by cases that build on it.
    world = await startReferenceWorld({ debian: needsDebian([...OWN_CASES, ...SHARED_CASES]), log: (l) => void process.stderr.write(`conformance: ${l}\n`) });
    process.stderr.write(`conformance: reference world ready${world.started.length ? `, started ${world.started.join(' and ')} (stopped at the end)` : ', all was serving already'}\n`);
    daemon = await startDaemon({ builder: 'real' });
    outDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-conformance-out-'));
  }, 1_800_000);

  afterAll(async () => {
    await daemon?.stop();
    await world?.release();
    if (outDir) await fsp.rm(outDir, { recursive: true, force: true });
  }, 120_000);

  /** Debian's docker client on the reference dockerd; a failure rejects with its stderr. */
  const docker = (...args: string[]) => mustRun(`docker ${args[0]}`, DOCKER, args, { env: { ...process.env, DOCKER_HOST: world.dockerHost } });

  /** Builds every case with both builders and gives the results. */
  async function runCases(cases: string[]): Promise<string[]> {
    const buildctl = [process.execPath, path.join(REPO, 'dist', 'buildctl', 'main.js'), '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client')];
    const lines: string[] = [];
    for (const dir of cases) {
      const result = await runCase(dir, { world, buildctl, outDir });
      process.stderr.write(`conformance: ${summaryLine(result)}\n`);
      lines.push(reported(result));
    }
    return lines;
  }

  test('every case of our own builds the same image as BuildKit: files, config and history', async () => {
    expect(OWN_CASES.length).toBeGreaterThan(0);
    expect(await runCases(OWN_CASES)).toEqual(OWN_CASES.map((c) => `${path.basename(c)}: same`));
  }, 3_600_000);

  test('every case of the shared kit (../shared/conformance/cases), where it is there, builds the same image as BuildKit', async () => {
    if (!SHARED_CASES_DIR) {
      console.warn(`conformance: ${path.join(SHARED_CONFORMANCE_DIR, 'cases')} does not exist: the shared cases were skipped (the project's own cases ran)`);
      return;
    }
    expect(await runCases(SHARED_CASES)).toEqual(SHARED_CASES.map((c) => `${path.basename(c)}: same`));
  }, 3_600_000);

  test('a --output type=docker archive loads into the reference dockerd with `docker load`', async () => {
    const dir = path.join(OWN_CASES_DIR, 'c36-image-config-basics');
    const archive = path.join(outDir, 'c36.docker.tar');
    const name = 'buildd-conformance/loaded:c36';
    const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${dir}`, '--local', `dockerfile=${dir}`, '--output', `type=docker,dest=${archive},name=${name}`]);
    expect(res.code).toBe(0);
    const { stdout: loaded } = await docker('load', '-i', archive);
    expect(loaded).toContain(name);
    try {
      const { stdout } = await docker('image', 'inspect', name, '--format', '{{json .Config.Cmd}} {{.Config.WorkingDir}} {{.Config.User}}');
      expect(stdout.trim()).toBe('["-c","cat motd.txt"] /srv/service 2000:2000');
    } finally {
      await world.docker(['rmi', name]);
    }
  }, 120_000);

  test('a layer whose random data is stored in gzip members of its own loads into dockerd (Go\'s gzip reader) and reads back whole', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-random-layer-'));
    const archive = path.join(dir, 'random.docker.tar');
    const name = 'buildd-conformance/random:1';
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
      await world.docker(['rmi', '-f', name]);
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test('docker push and docker pull through the reference dockerd: the embedded registry gives back the very image', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-docker-interop-'));
    const content = await LocalContentStore.open(path.join(tmp, 'content'));
    const registry = await startRegistryServer({ addr: '127.0.0.1:0', registry: await EmbeddedRegistry.open(path.join(tmp, 'registry'), content), logger: pino({ level: 'silent' }) });
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
      const { stdout: raw } = await mustRun('inspect the pushed manifest', 'skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
      expect(JSON.parse(raw).mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    } finally {
      await world.docker(['rmi', name]);
      await registry.stop();
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
