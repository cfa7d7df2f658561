import { execFile } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { startDaemon, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';

jest.setTimeout(240_000);

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(REPO, 'deploy', 'jenkins', 'buildctl-build.sh');

/**
 * deploy/jenkins: the shell the Jenkinsfile runs builds and pushes through a real buildd with
 * the client certificate files Jenkins would hand it, exporting and importing a registry
 * cache; skopeo (an independent client) finds the pushed digest. The Jenkinsfile runs that
 * script with the credentials it reads.
 */
let tmp: string;
let registry: TestRegistry;
let daemon: TestDaemon;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-jenkins-'));
  registry = await startRegistry();
  daemon = await startDaemon({ builder: 'real' });
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('the Jenkinsfile runs the build script with the credentials the script reads', () => {
  const jenkinsfile = readFileSync(path.join(REPO, 'deploy', 'jenkins', 'Jenkinsfile'), 'utf8');
  expect(jenkinsfile).toContain("sh 'bash deploy/jenkins/buildctl-build.sh'");
  const script = readFileSync(SCRIPT, 'utf8');
  const bound = [...jenkinsfile.matchAll(/variable: '([A-Z_]+)'/g)].map((m) => m[1]);
  expect(bound.sort()).toEqual(['BUILDD_TLS_CA', 'BUILDD_TLS_CERT', 'BUILDD_TLS_KEY']);
  for (const v of [...bound, 'BUILDD_ADDR', 'IMAGE']) {
    expect(script).toContain(`\${${v}:?`);
    if (v !== undefined && !v.startsWith('BUILDD_TLS')) expect(jenkinsfile).toMatch(new RegExp(`${v} = `));
  }
});

test('buildctl-build.sh builds, pushes and caches through buildd; skopeo finds the digest it prints', async () => {
  const base = (await pushBusyboxImage(registry.host, 'library/busybox', '1')).ref;
  const ctx = await writeContext(path.join(tmp, 'repo'), {
    Dockerfile: `FROM ${base} AS build\nARG GREETING\nRUN echo "$GREETING" > /greeting\nFROM build AS release\nRUN cat /greeting\n`,
  });
  const client = path.join(daemon.certsDir as string, 'client');
  const image = `${registry.host}/jenkins/app:42`;
  const env = {
    PATH: process.env['PATH'],
    BUILDD_ADDR: daemon.addr,
    BUILDD_TLS_CA: path.join(client, 'ca.pem'),
    BUILDD_TLS_CERT: path.join(client, 'cert.pem'),
    BUILDD_TLS_KEY: path.join(client, 'key.pem'),
    IMAGE: image,
    CONTEXT: ctx,
    TARGET: 'release',
    BUILD_ARGS: 'GREETING=hello-jenkins',
    CACHE_REF: `${registry.host}/jenkins/app:buildcache`,
    BUILDCTL: `${process.execPath} ${path.join(REPO, 'dist', 'buildctl', 'main.js')}`,
    METADATA_FILE: path.join(tmp, 'buildctl-metadata.json'),
  };
  const { stdout, stderr } = await run('bash', [SCRIPT], { cwd: tmp, env });
  expect(stderr).toMatch(/hello-jenkins/);
  const digest = /^pushed .*@(sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];
  expect(digest).toBeDefined();
  const md = JSON.parse(await fsp.readFile(env.METADATA_FILE, 'utf8')) as Record<string, string>;
  expect(md['containerimage.digest']).toBe(digest);
  const { stdout: inspected } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${image}`]);
  expect((JSON.parse(inspected) as { Digest: string }).Digest).toBe(digest);
  await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${env.CACHE_REF}`]);

  // a missing setting stops the script before anything runs, naming it
  const missing = await run('bash', [SCRIPT], { cwd: tmp, env: { ...env, IMAGE: '' } }).catch((err: { code: number; stderr: string }) => err);
  expect(missing).toMatchObject({ code: 1, stderr: expect.stringMatching(/IMAGE: set IMAGE to the image reference to push/) });
});
