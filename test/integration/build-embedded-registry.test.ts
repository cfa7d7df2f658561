import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';
import { freePort } from '../helpers/registry';
import { writeContext } from '../helpers/build-env';

const run = promisify(execFile);
jest.setTimeout(180_000);

/**
 * buildd --registry-addr: the daemon serves its own OCI registry. The base image is pushed
 * into it with skopeo, a build FROM it pushes its result back into it, skopeo reads the image
 * out again, and it is still served after a restart of the daemon.
 */
let tmp: string;
let root: string;
let registryAddr: string;
let daemon: TestDaemon;
let base: Awaited<ReturnType<typeof pushBusyboxImage>>;

/** buildctl build of the context dir `ctx` (its Dockerfile) on daemon `d`, with extra flags. */
function build(d: TestDaemon, ctx: string, extra: string[]): ReturnType<typeof runBuildctl> {
  return runBuildctl([
    '--addr', d.addr, '--tlsdir', path.join(d.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, ...extra,
  ]);
}

async function start(): Promise<TestDaemon> {
  // --debug: the registry logs each request it serves
  return startDaemon({ builder: 'real', root, extraArgs: ['--registry-addr', registryAddr, '--debug'] });
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-embedded-registry-'));
  root = path.join(tmp, 'root');
  registryAddr = `127.0.0.1:${await freePort()}`;
  daemon = await start();
  base = await pushBusyboxImage(registryAddr, 'library/busybox', '1');
});

afterAll(async () => {
  await daemon?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('a build FROM the embedded registry pushes its image into it; skopeo reads it back, also after a restart', async () => {
  expect(daemon.stderr()).toContain(`registry listening on ${registryAddr}`);
  const ctx = await writeContext(path.join(tmp, 'ctx'), {
    'hello.txt': 'hello from the context\n',
    Dockerfile: [`FROM ${base.ref}`, 'COPY hello.txt /hello.txt', 'RUN echo built > /built', ''].join('\n'),
  });
  const name = `${registryAddr}/team/app:1.0`;
  const md = path.join(tmp, 'md.json');
  const res = await build(daemon, ctx, ['--output', `type=image,name=${name},push=true`, '--metadata-file', md]);
  expect(res.stderr).not.toContain('ERROR');
  expect(res.code).toBe(0);
  const digest = (JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>)['containerimage.digest'];
  const inspect = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${name}`])).stdout) as { Digest: string; Layers: string[] };
  expect(inspect.Digest).toBe(digest);
  expect(inspect.Layers).toHaveLength(3);
  // out to an OCI layout; the RUN's layer holds what the RUN wrote
  const out = path.join(tmp, 'oci');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${name}`, `oci:${out}:app`]);
  const last = (inspect.Layers[2] as string).replace('sha256:', '');
  const { stdout: listing } = await run('tar', ['-tzf', path.join(out, 'blobs', 'sha256', last)]);
  expect(listing.split('\n')).toContain('built');
  const tags = await (await fetch(`http://${registryAddr}/v2/team/app/tags/list`)).json();
  expect(tags).toEqual({ name: 'team/app', tags: ['1.0'] });
  // published by linking what the content store holds: the build sent the registry nothing
  const requests = daemon.stderr().split('\n').filter((l) => l.includes('"registry request"')).map((l) => JSON.parse(l) as { method: string; path: string });
  expect(requests.filter((r) => r.path.startsWith('/v2/library/busybox/')).length).toBeGreaterThan(0);
  expect(requests.filter((r) => r.path.startsWith('/v2/team/app/') && r.method !== 'GET' && r.method !== 'HEAD')).toEqual([]);

  await daemon.stop();
  daemon = await start();
  const again = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${name}`])).stdout) as { Digest: string };
  expect(again.Digest).toBe(digest);
  const catalog = await (await fetch(`http://${registryAddr}/v2/_catalog`)).json();
  expect(catalog).toEqual({ repositories: ['library/busybox', 'team/app'] });
});

test('type=registry with push-by-digest=true publishes the manifest by its digest and sets no tag', async () => {
  const ctx = await writeContext(path.join(tmp, 'ctx-digest'), { Dockerfile: [`FROM ${base.ref}`, 'RUN echo by-digest > /d', ''].join('\n') });
  const md = path.join(tmp, 'md-digest.json');
  const res = await build(daemon, ctx, ['--output', `type=registry,name=${registryAddr}/bydigest/app:not-set,push-by-digest=true`, '--metadata-file', md]);
  expect(res.stderr).not.toContain('WARNING');
  expect(res.code).toBe(0);
  const digest = (JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>)['containerimage.digest'];
  const inspect = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registryAddr}/bydigest/app@${digest}`])).stdout) as { layers: unknown[] };
  expect(inspect.layers).toHaveLength(2);
  expect(await (await fetch(`http://${registryAddr}/v2/bydigest/app/tags/list`)).json()).toEqual({ name: 'bydigest/app', tags: [] });
});

test('"name=a,b" (CSV-quoted, as BuildKit parses --output) names and pushes the image under both names', async () => {
  const ctx = await writeContext(path.join(tmp, 'ctx-two'), { Dockerfile: [`FROM ${base.ref}`, 'RUN echo two > /two', ''].join('\n') });
  const md = path.join(tmp, 'md-two.json');
  const res = await build(daemon, ctx, ['--output', `type=image,"name=${registryAddr}/two/a:1,${registryAddr}/two/b:1",push=true`, '--metadata-file', md]);
  expect(res.code).toBe(0);
  const metadata = JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>;
  expect(metadata['image.name']).toBe(`${registryAddr}/two/a:1,${registryAddr}/two/b:1`);
  for (const repo of ['two/a', 'two/b']) {
    const inspect = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${registryAddr}/${repo}:1`])).stdout) as { Digest: string };
    expect(inspect.Digest).toBe(metadata['containerimage.digest']);
  }
});

test('annotation.* and annotation-manifest.* attributes land on the pushed manifest', async () => {
  const ctx = await writeContext(path.join(tmp, 'ctx-annotated'), { Dockerfile: [`FROM ${base.ref}`, 'RUN echo annotated > /a', ''].join('\n') });
  const name = `${registryAddr}/annotated/app:1`;
  const res = await build(daemon, ctx, ['--output', `type=image,name=${name},push=true,annotation.org.opencontainers.image.title=hello,annotation-manifest[linux/amd64].org.example.k=v,annotation-manifest[linux/arm64].org.example.no=x`]);
  expect(res.stderr).not.toContain('WARNING');
  expect(res.code).toBe(0);
  const manifest = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout) as { annotations?: Record<string, string> };
  expect(manifest.annotations).toEqual({ 'org.opencontainers.image.title': 'hello', 'org.example.k': 'v' });
});

test('a registry address that is not loopback stops the daemon at start, saying why', async () => {
  const bad = await startDaemon({ builder: 'real', root: path.join(tmp, 'bad-root'), extraArgs: ['--registry-addr', '0.0.0.0:5999'] }).then(
    async (d) => {
      await d.stop();
      return undefined;
    },
    (err: Error) => err,
  );
  expect(bad?.message).toMatch(/Cannot serve the registry on 0\.0\.0\.0:5999: without TLS and authentication it listens on a loopback address only/);
});

test("--registry-tls and --registry-htpasswd: the daemon's certificate and Basic auth; a build still publishes into it directly", async () => {
  const htpasswd = path.join(tmp, 'htpasswd');
  await fsp.writeFile(htpasswd, `ci:${bcrypt.hashSync('token-1', 5)}\n`);
  const addr = `127.0.0.1:${await freePort()}`;
  const secured = await startDaemon({ builder: 'real', root: path.join(tmp, 'tls-root'), extraArgs: ['--registry-addr', addr, '--registry-tls', '--registry-htpasswd', htpasswd] });
  try {
    const certDir = path.join(tmp, 'tls-ca');
    await fsp.mkdir(certDir, { recursive: true });
    await fsp.copyFile(path.join(secured.certsDir as string, 'daemon', 'ca.pem'), path.join(certDir, 'ca.crt'));
    const ctx = await writeContext(path.join(tmp, 'tls-ctx'), { Dockerfile: [`FROM ${base.ref}`, 'RUN echo secured > /secured', ''].join('\n') });
    const name = `${addr}/secure/app:1`;
    const md = path.join(tmp, 'tls-md.json');
    const res = await build(secured, ctx, ['--output', `type=image,name=${name},push=true`, '--metadata-file', md]);
    expect(res.code).toBe(0);
    const digest = (JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>)['containerimage.digest'];
    const inspect = JSON.parse((await run('skopeo', ['inspect', '--cert-dir', certDir, '--creds', 'ci:token-1', `docker://${name}`])).stdout) as { Digest: string };
    expect(inspect.Digest).toBe(digest);
    const refused = await run('skopeo', ['inspect', '--cert-dir', certDir, `docker://${name}`]).then(() => 'pulled', (err: { stderr: string }) => err.stderr);
    expect(refused).toMatch(/unauthorized|authentication required/i);
  } finally {
    await secured.stop();
  }
});
