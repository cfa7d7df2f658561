import { execFile } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';
import { writeContext } from '../helpers/build-env';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry';

const run = promisify(execFile);
jest.setTimeout(300_000);

/**
 * `--opt platform=linux/amd64,linux/arm64`: one build, one image index. Pushed to a real
 * registry, skopeo (an independent client) sees the index and fetches each platform's image,
 * whose RUN wrote what `uname -m` says there; a stage on $BUILDPLATFORM runs once for both;
 * type=oci holds the index, type=local/tar one folder per platform, type=docker refuses, as
 * BuildKit's exporters; oci-mediatypes=false makes a Docker manifest list; a push into the
 * daemon's own registry publishes the index too.
 */
const REPO = path.resolve(__dirname, '..', '..');
let tmp: string;
let registry: TestRegistry;
let own: string;
let daemon: TestDaemon;
let ctx: string;

const DOCKERFILE = (base: string): string => [
  `FROM --platform=$BUILDPLATFORM ${base} AS tools`,
  'RUN echo made-on-the-build-platform > /tool && uname -m > /tool-arch',
  `FROM ${base}`,
  'ARG TARGETPLATFORM TARGETARCH',
  'COPY --from=tools /tool /tool-arch /',
  'RUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETARCH" > /target',
  '',
].join('\n');

beforeAll(async () => {
  if (!existsSync('/proc/sys/fs/binfmt_misc/qemu-aarch64')) throw new Error('qemu-aarch64 is not registered: run scripts/register-emulators.sh (scripts/install-system-deps.sh does)');
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-multi-platform-'));
  registry = await startRegistry();
  await run('bash', [path.join(REPO, 'scripts', 'multiarch-busybox.sh'), registry.host]);
  own = `127.0.0.1:${await freePort()}`;
  daemon = await startDaemon({ builder: 'real', extraArgs: ['--registry-addr', own] });
  ctx = await writeContext(path.join(tmp, 'ctx'), { Dockerfile: DOCKERFILE(`${registry.host}/busybox:multi`) });
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

function build(extra: string[]): ReturnType<typeof runBuildctl> {
  return runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
    '--opt', 'platform=linux/amd64,linux/arm64', ...extra,
  ]);
}

/** The files of a `skopeo copy ... dir:` image, by path, from all its layers. */
async function imageFiles(dir: string): Promise<{ config: { architecture: string; os: string; variant?: string }; files: Map<string, Buffer> }> {
  const manifest = JSON.parse(await fsp.readFile(path.join(dir, 'manifest.json'), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const blob = (d: string): string => path.join(dir, d.replace('sha256:', ''));
  const files = new Map<string, Buffer>();
  for (const layer of manifest.layers) for (const [name, data] of await tarFiles(await fsp.readFile(blob(layer.digest)))) files.set(name, data);
  return { config: JSON.parse(await fsp.readFile(blob(manifest.config.digest), 'utf8')), files };
}

async function tarFiles(bytes: Buffer): Promise<Map<string, Buffer>> {
  const { gunzipSync } = await import('node:zlib');
  const raw = bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        out.set(header.name.replace(/^\.\//, ''), Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(raw);
  await done;
  return out;
}

test('pushes one index of both platforms; each image was built for its platform, the $BUILDPLATFORM stage once', async () => {
  const name = `${registry.host}/multi/app:1`;
  const res = await build(['--output', `type=image,name=${name},push=true,registry.insecure=true`]);
  expect(res.code).toBe(0);
  // the step of the stage on $BUILDPLATFORM is one vertex, run once for both targets
  const toolSteps = new Set([...res.stderr.matchAll(/^#(\d+) \[linux\/amd64 tools 2\/2\] RUN echo made-on-the-build-platform/gm)].map((m) => m[1]));
  expect(toolSteps.size).toBe(1);
  expect(res.stderr).toMatch(/\[linux\/arm64 stage-1 3\/3\] RUN uname -m/);
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
  const index = JSON.parse(stdout) as { mediaType: string; manifests: Array<{ mediaType: string; platform: { os: string; architecture: string; variant?: string } }> };
  expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
  expect(index.manifests.map((m) => m.platform)).toEqual([{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]);
  for (const [arch, uname] of [['arm64', 'aarch64'], ['amd64', 'x86_64']] as const) {
    const dir = path.join(tmp, `copy-${arch}`);
    await run('skopeo', ['copy', '--quiet', '--override-arch', arch, '--src-tls-verify=false', `docker://${name}`, `dir:${dir}`]);
    const { config, files } = await imageFiles(dir);
    expect(config).toMatchObject({ os: 'linux', architecture: arch });
    expect(config.variant).toBeUndefined();
    expect(files.get('arch')?.toString().trim()).toBe(uname);
    expect(files.get('target')?.toString().trim()).toBe(`linux/${arch} ${arch}`);
    // made once, natively, and copied into both
    expect(files.get('tool')?.toString().trim()).toBe('made-on-the-build-platform');
    expect(files.get('tool-arch')?.toString().trim()).toBe('x86_64');
    // the binaries are the platform's own: ELF machine 0xb7 (aarch64) or 0x3e (x86-64)
    expect(files.get('bin/busybox')?.readUInt16LE(18)).toBe(arch === 'arm64' ? 0xb7 : 0x3e);
  }
});

test('oci-mediatypes=false pushes a Docker manifest list of Docker manifests', async () => {
  const name = `${registry.host}/multi/docker-types:1`;
  expect((await build(['--output', `type=image,name=${name},push=true,registry.insecure=true,oci-mediatypes=false`])).code).toBe(0);
  const index = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout) as { mediaType: string; manifests: Array<{ mediaType: string }> };
  expect(index.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
  expect(index.manifests.map((m) => m.mediaType)).toEqual(Array(2).fill('application/vnd.docker.distribution.manifest.v2+json'));
});

test('a push into the daemon\'s own registry publishes the index and both manifests', async () => {
  const name = `${own}/team/multi:1`;
  expect((await build(['--output', `type=image,name=${name},push=true`])).code).toBe(0);
  const index = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout) as { manifests: Array<{ platform: { architecture: string } }> };
  expect(index.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
  const arm = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', '--override-arch', 'arm64', `docker://${name}`])).stdout) as { Architecture: string };
  expect(arm.Architecture).toBe('arm64');
});

test('type=oci holds the index, named in index.json', async () => {
  const out = path.join(tmp, 'multi.oci.tar');
  expect((await build(['--output', `type=oci,dest=${out},name=example.com/multi:2`])).code).toBe(0);
  const files = await tarFiles(await fsp.readFile(out));
  const top = JSON.parse(files.get('index.json')?.toString() ?? '{}') as { manifests: Array<{ mediaType: string; digest: string; annotations?: Record<string, string> }> };
  expect(top.manifests).toHaveLength(1);
  expect(top.manifests[0]).toMatchObject({ mediaType: 'application/vnd.oci.image.index.v1+json', annotations: { 'org.opencontainers.image.ref.name': '2' } });
  const inner = JSON.parse(files.get(`blobs/sha256/${top.manifests[0]?.digest.replace('sha256:', '')}`)?.toString() ?? '{}') as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
  expect(inner.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
  // every manifest and blob the index names is in the archive
  for (const m of inner.manifests) {
    const manifest = JSON.parse(files.get(`blobs/sha256/${m.digest.replace('sha256:', '')}`)?.toString() ?? 'null') as { config: { digest: string }; layers: Array<{ digest: string }> };
    for (const d of [manifest.config, ...manifest.layers]) expect(files.has(`blobs/sha256/${d.digest.replace('sha256:', '')}`)).toBe(true);
  }
});

test('type=local writes one folder per platform; type=tar the same in one tar', async () => {
  const dest = path.join(tmp, 'local');
  expect((await build(['--output', `type=local,dest=${dest}`])).code).toBe(0);
  expect((await fsp.readdir(dest)).sort()).toEqual(['linux_amd64', 'linux_arm64']);
  expect((await fsp.readFile(path.join(dest, 'linux_arm64', 'arch'), 'utf8')).trim()).toBe('aarch64');
  expect((await fsp.readFile(path.join(dest, 'linux_amd64', 'arch'), 'utf8')).trim()).toBe('x86_64');
  const out = path.join(tmp, 'multi.tar');
  expect((await build(['--output', `type=tar,dest=${out}`])).code).toBe(0);
  const files = await tarFiles(await fsp.readFile(out));
  expect(files.get('linux_arm64/target')?.toString().trim()).toBe('linux/arm64 arm64');
  expect(files.get('linux_amd64/target')?.toString().trim()).toBe('linux/amd64 amd64');
});

test('type=docker refuses an index with BuildKit\'s words, and the daemon serves the next build', async () => {
  const res = await build(['--output', `type=docker,dest=${path.join(tmp, 'docker.tar')},name=multi:1`]);
  expect(res.code).not.toBe(0);
  expect(res.stderr).toContain('docker exporter does not currently support exporting manifest lists');
  const next = await build(['--output', `type=local,dest=${path.join(tmp, 'after')}`]);
  expect(next.code).toBe(0);
});

test('a platform the index of the base lacks fails naming the platforms it has', async () => {
  const res = await runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--opt', 'platform=linux/amd64,linux/s390x',
  ]);
  expect(res.code).not.toBe(0);
  expect(res.stderr).toMatch(/no match for platform linux\/s390x in its index, which has linux\/amd64, linux\/arm64/);
});

/** Builds both platforms with a fresh daemon (an empty root) importing `importRef`; every step must come from that cache. */
async function expectAllCachedFrom(importRef: string): Promise<void> {
  const fresh = await startDaemon({ builder: 'real' });
  try {
    const res = await runBuildctl([
      '--addr', fresh.addr, '--tlsdir', path.join(fresh.certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
      '--opt', 'platform=linux/amd64,linux/arm64', '--import-cache', `type=registry,ref=${importRef}`,
    ]);
    expect(res.code).toBe(0);
    expect(res.stderr).not.toMatch(/WARN/);
    for (const p of ['linux/amd64', 'linux/arm64']) expect(res.stderr).toMatch(new RegExp(`\\[${p} stage-1 3/3\\] RUN uname -m[^\\n]*\\n#\\d+ CACHED`));
    expect(res.stderr).not.toMatch(/RUN echo made-on-the-build-platform[^\n]*\n#\d+ DONE/);
  } finally {
    await fresh.stop();
  }
}

test('an inline cache pushed with the index is imported for both platforms by a daemon with an empty root', async () => {
  const name = `${registry.host}/multi/cached:1`;
  expect((await build(['--export-cache', 'type=inline', '--output', `type=image,name=${name},push=true,registry.insecure=true`])).code).toBe(0);
  await expectAllCachedFrom(name);
});

test('a registry cache exported by a two-platform build holds both platforms\' steps', async () => {
  const ref = `${registry.host}/multi/cache:buildcache`;
  expect((await build(['--export-cache', `type=registry,ref=${ref},registry.insecure=true`])).code).toBe(0);
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  const manifest = JSON.parse(stdout) as { layers?: unknown[]; manifests?: unknown[] };
  // both platforms' RUN layers (busybox's two, and two per platform's stage) are in the one cache
  expect((manifest.layers ?? manifest.manifests ?? []).length).toBeGreaterThanOrEqual(4);
  await expectAllCachedFrom(ref);
});
