import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { Agent, fetch as ufetch } from 'undici';
import { EmbeddedRegistry } from '../../buildd/registry/embedded-registry';
import { HtpasswdAuth } from '../../buildd/registry/htpasswd-auth';
import { startRegistryServer, type RegistryServer } from '../../buildd/registry/registry-server';
import { LocalContentStore } from '../../store/content-store';
import { pushBusyboxImage, type BusyboxImage } from '../helpers/busybox-image';
import { captureLogger } from '../helpers/capture-logger';
import { makeCerts } from '../helpers/certs';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

const run = promisify(execFile);
jest.setTimeout(120_000);

/**
 * The embedded registry (buildd/registry) against the Distribution spec's workflows, driven by
 * skopeo (an independent client) and by raw HTTP for what a client would not send: pull, push
 * (monolithic, chunked, streamed, mounted), content discovery, content management, referrers,
 * and the hostile requests it must refuse while it keeps serving.
 */
let tmp: string;
let server: RegistryServer;
let base: string;
let upstream: TestRegistry;
let busybox: BusyboxImage;
const log = captureLogger('info');

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-registry-server-'));
  const content = await LocalContentStore.open(path.join(tmp, 'content'));
  server = await startRegistryServer({ addr: '127.0.0.1:0', registry: await EmbeddedRegistry.open(path.join(tmp, 'registry'), content), logger: log.logger, uploadIdleMs: 300 });
  base = `http://${server.address}`;
  upstream = await startRegistry();
  busybox = await pushBusyboxImage(upstream.host);
});

afterAll(async () => {
  await server?.stop();
  await upstream?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

/** A GET of `rawPath` exactly as written (no dot-segment resolution). */
function rawGet(rawPath: string): Promise<{ status: number; body: string }> {
  const [host, port] = server.address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: Array<{ code: string }> };
  return body.errors?.[0]?.code;
}

/** Pushes `blob` to `repo` monolithically (POST ?digest=); returns its digest. */
async function pushBlob(repo: string, blob: Buffer): Promise<string> {
  const digest = sha(blob);
  const res = await fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  expect(res.status).toBe(201);
  expect(res.headers.get('docker-content-digest')).toBe(digest);
  return digest;
}

/** An OCI image manifest of `config` and `layers` already pushed to the repository. */
function imageManifest(config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(l), size: l.length })),
    ...extra,
  }));
}

async function putManifest(repo: string, ref: string, body: Buffer, type = 'application/vnd.oci.image.manifest.v1+json'): Promise<Response> {
  return fetch(`${base}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'content-type': type } });
}

test('the base endpoint answers with the API version', async () => {
  const res = await fetch(`${base}/v2/`);
  expect(res.status).toBe(200);
  expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
});

test('skopeo copies an image in and out: the manifest and every blob come back byte for byte', async () => {
  const ours = `${server.address}/mirror/busybox:1`;
  await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${busybox.ref}`, `docker://${ours}`]);
  const { stdout: original } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${busybox.ref}`]);
  const { stdout: served } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ours}`]);
  expect(served).toBe(original);
  // out again to a directory: skopeo checks every digest as it reads
  const out = path.join(tmp, 'out');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ours}`, `dir:${out}`]);
  const layer = await fsp.readFile(path.join(out, busybox.layerDigest.replace('sha256:', '')));
  expect(sha(layer)).toBe(busybox.layerDigest);
  const tags = await (await fetch(`${base}/v2/mirror/busybox/tags/list`)).json();
  expect(tags).toEqual({ name: 'mirror/busybox', tags: ['1'] });
});

test('a chunked upload takes its chunks in order and refuses one that does not start where the upload ends', async () => {
  const blob = randomBytes(300_000);
  const start = await fetch(`${base}/v2/chunks/blobs/uploads/`, { method: 'POST' });
  expect(start.status).toBe(202);
  const location = new URL(start.headers.get('location') as string, base);
  const first = await fetch(location, { method: 'PATCH', body: blob.subarray(0, 100_000), headers: { 'content-range': '0-99999', 'content-type': 'application/octet-stream' } });
  expect(first.status).toBe(202);
  expect(first.headers.get('range')).toBe('0-99999');
  const wrong = await fetch(location, { method: 'PATCH', body: blob.subarray(200_000), headers: { 'content-range': '200000-299999' } });
  expect(wrong.status).toBe(416);
  const status = await fetch(location);
  expect(status.status).toBe(204);
  expect(status.headers.get('range')).toBe('0-99999');
  // a streamed PATCH (no Content-Range), then the last chunk with the closing PUT
  expect((await fetch(location, { method: 'PATCH', body: blob.subarray(100_000, 200_000) })).status).toBe(202);
  const put = new URL(location);
  put.searchParams.set('digest', sha(blob));
  const done = await fetch(put, { method: 'PUT', body: blob.subarray(200_000), headers: { 'content-type': 'application/octet-stream' } });
  expect(done.status).toBe(201);
  const got = Buffer.from(await (await fetch(`${base}/v2/chunks/blobs/${sha(blob)}`)).arrayBuffer());
  expect(got.equals(blob)).toBe(true);
});

test('a blob whose content is not its digest is refused, and nothing of it stays', async () => {
  const blob = randomBytes(1000);
  const claimed = sha(Buffer.from('something else'));
  const res = await fetch(`${base}/v2/hostile/blobs/uploads/?digest=${claimed}`, { method: 'POST', body: blob });
  expect(res.status).toBe(400);
  expect(await errorCode(res)).toBe('DIGEST_INVALID');
  expect((await fetch(`${base}/v2/hostile/blobs/${claimed}`, { method: 'HEAD' })).status).toBe(404);
  expect((await fetch(`${base}/v2/hostile/blobs/${sha(blob)}`, { method: 'HEAD' })).status).toBe(404);
  expect(await fsp.readdir(path.join(tmp, 'registry', 'uploads'))).toEqual([]);
});

test('manifests that name missing blobs, disagree with their media type or are too large are refused', async () => {
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const layer = randomBytes(100);
  await pushBlob('checks', config);
  const missing = await putManifest('checks', 'v1', imageManifest(config, [layer]));
  expect(missing.status).toBe(400);
  expect(await errorCode(missing)).toBe('MANIFEST_BLOB_UNKNOWN');
  // an index posing as an image manifest
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }));
  const posing = await putManifest('checks', 'v1', index, 'application/vnd.oci.image.manifest.v1+json');
  expect(posing.status).toBe(400);
  expect(await errorCode(posing)).toBe('MANIFEST_INVALID');
  const noMediaTypeIndex = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
  expect(await errorCode(await putManifest('checks', 'v1', noMediaTypeIndex, 'application/vnd.oci.image.manifest.v1+json'))).toBe('MANIFEST_INVALID');
  const huge = Buffer.alloc(5 * 1024 * 1024, 0x20);
  const tooLarge = await putManifest('checks', 'v1', huge);
  expect(tooLarge.status).toBe(413);
  const notJson = await putManifest('checks', 'v1', Buffer.from('{not json'));
  expect(await errorCode(notJson)).toBe('MANIFEST_INVALID');
  // a digest reference must be the body's digest
  await pushBlob('checks', layer);
  const good = imageManifest(config, [layer]);
  const wrongDigest = await putManifest('checks', sha(Buffer.from('x')), good);
  expect(await errorCode(wrongDigest)).toBe('DIGEST_INVALID');
  // and after all that, the registry still takes a good one
  const ok = await putManifest('checks', 'v1', good);
  expect(ok.status).toBe(201);
  expect(ok.headers.get('docker-content-digest')).toBe(sha(good));
  const head = await fetch(`${base}/v2/checks/manifests/v1`, { method: 'HEAD' });
  expect(head.status).toBe(200);
  expect(head.headers.get('content-type')).toBe('application/vnd.oci.image.manifest.v1+json');
  expect(head.headers.get('content-length')).toBe(String(good.length));
});

test('names outside the grammar and pages too large are refused', async () => {
  for (const name of ['a/../b', '../../etc', 'UPPER/case', 'a//b', '-lead', 'x%2e%2e']) {
    // sent as written: fetch would resolve the dots before they reach the registry
    const res = await rawGet(`/v2/${name}/tags/list`);
    expect([res.status, JSON.parse(res.body).errors[0].code]).toEqual([400, 'NAME_INVALID']);
  }
  const huge = await fetch(`${base}/v2/mirror/busybox/tags/list?n=100000000`);
  expect([huge.status, await errorCode(huge)]).toEqual([400, 'PAGINATION_NUMBER_INVALID']);
  const bad = await fetch(`${base}/v2/_catalog?n=-1`);
  expect(bad.status).toBe(400);
});

test('hostile request lines, long names, odd tags and a bad digest on a monolithic POST: answered, nothing left, still serving', async () => {
  // a request target URL cannot parse was once thrown outside the handler, ending the daemon
  for (const target of ['//[', '//x:99999/', '//%zz/', '/v2/a/blobs/uploads/?digest=%zz']) {
    const res = await rawGet(target);
    expect(res.status).toBeGreaterThanOrEqual(400);
  }
  expect((await fetch(`${base}/v2/`)).status).toBe(200);
  // the longest names the grammar allows get a record like any other
  const long = `${'a'.repeat(120)}/${'b'.repeat(134)}`;
  const config = Buffer.from('{"architecture":"amd64","os":"linux","long":1}');
  await pushBlob(long, config);
  expect((await putManifest(long, '__proto__', imageManifest(config, []))).status).toBe(201);
  expect((await putManifest(long, 'constructor', imageManifest(config, []))).status).toBe(201);
  expect(await (await fetch(`${base}/v2/${long}/tags/list`)).json()).toEqual({ name: long, tags: ['__proto__', 'constructor'] });
  expect((await fetch(`${base}/v2/${long}/manifests/__proto__`)).status).toBe(200);
  expect((await fetch(`${base}/v2/${long}/manifests/hasOwnProperty`, { method: 'DELETE' })).status).toBe(404);
  expect(((await (await fetch(`${base}/v2/_catalog`)).json()) as { repositories: string[] }).repositories).toContain(long);
  // a digest that cannot be one is refused before anything is written
  const bad = await fetch(`${base}/v2/baddigest/blobs/uploads/?digest=sha256:XYZ`, { method: 'POST', body: randomBytes(100) });
  expect([bad.status, await errorCode(bad)]).toEqual([400, 'DIGEST_INVALID']);
  expect(await fsp.readdir(path.join(tmp, 'registry', 'uploads'))).toEqual([]);
});

test('an upload that a request is still writing to cannot be cancelled under it', async () => {
  const start = await fetch(`${base}/v2/busy/blobs/uploads/`, { method: 'POST' });
  const location = new URL(start.headers.get('location') as string, base);
  const [host, port] = server.address.split(':') as [string, string];
  const patch = http.request({ host, port: Number(port), method: 'PATCH', path: location.pathname, headers: { 'content-type': 'application/octet-stream' } });
  const answered = new Promise<number>((resolve, reject) => {
    patch.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    patch.on('error', reject);
  });
  patch.write(randomBytes(1000));
  // the first bytes are in: the upload is busy until the PATCH ends
  await waitFor('the PATCH to be under way', async () => ((await fsp.readdir(path.join(tmp, 'registry', 'uploads'))).length > 0 ? true : undefined));
  const refused = await fetch(location, { method: 'DELETE' });
  expect(refused.status).toBe(409);
  patch.end(randomBytes(1000));
  expect(await answered).toBe(202);
  expect((await fetch(location, { method: 'DELETE' })).status).toBe(204);
  expect((await fetch(location)).status).toBe(404);
});

test('tags and the catalog page with n and last, with a Link to the next page', async () => {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","tags":true}');
  await pushBlob('paging/app', config);
  const m = imageManifest(config, []);
  for (const tag of ['c', 'a', 'b', 'd']) expect((await putManifest('paging/app', tag, m)).status).toBe(201);
  const page1 = await fetch(`${base}/v2/paging/app/tags/list?n=2`);
  expect(await page1.json()).toEqual({ name: 'paging/app', tags: ['a', 'b'] });
  expect(page1.headers.get('link')).toBe('</v2/paging/app/tags/list?n=2&last=b>; rel="next"');
  const page2 = await fetch(`${base}/v2/paging/app/tags/list?n=2&last=b`);
  expect(await page2.json()).toEqual({ name: 'paging/app', tags: ['c', 'd'] });
  expect(page2.headers.get('link')).toBeNull();
  const catalog = (await (await fetch(`${base}/v2/_catalog`)).json()) as { repositories: string[] };
  expect(catalog.repositories).toEqual([...catalog.repositories].sort());
  expect(catalog.repositories).toEqual(expect.arrayContaining(['mirror/busybox', 'paging/app', 'checks', 'chunks']));
  expect((await fetch(`${base}/v2/nothing/here/tags/list`)).status).toBe(404);
});

test('a blob is mounted from another repository without being sent again, and read back by range', async () => {
  const blob = randomBytes(10_000);
  const digest = await pushBlob('mount/src', blob);
  const mounted = await fetch(`${base}/v2/mount/dst/blobs/uploads/?mount=${digest}&from=mount/src`, { method: 'POST' });
  expect(mounted.status).toBe(201);
  expect(mounted.headers.get('location')).toBe(`/v2/mount/dst/blobs/${digest}`);
  // a repository that does not have it cannot lend it: a plain upload starts instead
  const notThere = await fetch(`${base}/v2/mount/other/blobs/uploads/?mount=${digest}&from=mount/empty`, { method: 'POST' });
  expect(notThere.status).toBe(202);
  expect((await fetch(new URL(notThere.headers.get('location') as string, base), { method: 'DELETE' })).status).toBe(204);
  const part = await fetch(`${base}/v2/mount/dst/blobs/${digest}`, { headers: { range: 'bytes=100-199' } });
  expect(part.status).toBe(206);
  expect(part.headers.get('content-range')).toBe('bytes 100-199/10000');
  expect(Buffer.from(await part.arrayBuffer()).equals(blob.subarray(100, 200))).toBe(true);
  expect((await fetch(`${base}/v2/mount/dst/blobs/${digest}`, { headers: { range: 'bytes=20000-' } })).status).toBe(416);
  // a repository only serves what was pushed or mounted into it
  expect((await fetch(`${base}/v2/mount/other/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
});

test('manifests and tags are deleted; a referrer is listed for its subject and filtered by artifact type', async () => {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","del":1}');
  await pushBlob('manage/app', config);
  const subject = imageManifest(config, []);
  expect((await putManifest('manage/app', 'v1', subject)).status).toBe(201);
  expect((await putManifest('manage/app', 'v2', subject)).status).toBe(201);
  const emptyConfig = Buffer.from('{}');
  await pushBlob('manage/app', emptyConfig);
  const sbom = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/spdx+json',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(emptyConfig), size: emptyConfig.length },
    layers: [],
    subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(subject), size: subject.length },
    annotations: { 'org.example': 'sbom' },
  }));
  const pushed = await putManifest('manage/app', sha(sbom), sbom);
  expect(pushed.status).toBe(201);
  expect(pushed.headers.get('oci-subject')).toBe(sha(subject));
  const referrers = await (await fetch(`${base}/v2/manage/app/referrers/${sha(subject)}`)).json();
  expect(referrers).toEqual({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(sbom), size: sbom.length, artifactType: 'application/spdx+json', annotations: { 'org.example': 'sbom' } }],
  });
  const filtered = await fetch(`${base}/v2/manage/app/referrers/${sha(subject)}?artifactType=application/other`);
  expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
  expect(((await filtered.json()) as { manifests: unknown[] }).manifests).toEqual([]);
  // a tag goes alone; the manifest by digest takes its remaining tags with it
  expect((await fetch(`${base}/v2/manage/app/manifests/v1`, { method: 'DELETE' })).status).toBe(202);
  expect((await fetch(`${base}/v2/manage/app/manifests/v1`)).status).toBe(404);
  expect((await fetch(`${base}/v2/manage/app/manifests/v2`)).status).toBe(200);
  expect((await fetch(`${base}/v2/manage/app/manifests/${sha(subject)}`, { method: 'DELETE' })).status).toBe(202);
  expect((await fetch(`${base}/v2/manage/app/manifests/v2`)).status).toBe(404);
  expect((await fetch(`${base}/v2/manage/app/manifests/${sha(subject)}`, { method: 'DELETE' })).status).toBe(404);
  expect((await fetch(`${base}/v2/manage/app/blobs/${sha(config)}`, { method: 'DELETE' })).status).toBe(202);
  expect((await fetch(`${base}/v2/manage/app/blobs/${sha(config)}`, { method: 'HEAD' })).status).toBe(404);
});

test('an upload abandoned halfway is removed after the idle time', async () => {
  const start = await fetch(`${base}/v2/abandoned/blobs/uploads/`, { method: 'POST' });
  const location = new URL(start.headers.get('location') as string, base);
  expect((await fetch(location, { method: 'PATCH', body: randomBytes(5000) })).status).toBe(202);
  // watched on disk: a status request would count as activity and keep it
  const uploadsDir = path.join(tmp, 'registry', 'uploads');
  await waitFor('the abandoned upload to go', async () => ((await fsp.readdir(uploadsDir)).length === 0 ? true : undefined), 10_000);
  expect((await fetch(location)).status).toBe(404);
  expect(log.at('info').some((l) => l.msg === 'registry: removed abandoned uploads')).toBe(true);
});

test('a non-loopback address is refused while the registry has no TLS and authentication', async () => {
  const content = await LocalContentStore.open(path.join(tmp, 'other-content'));
  await expect(startRegistryServer({ addr: '0.0.0.0:0', registry: await EmbeddedRegistry.open(path.join(tmp, 'other'), content), logger: log.logger })).rejects.toThrow(/loopback address only/);
});

describe('with TLS and htpasswd authentication', () => {
  let secure: RegistryServer;
  let open: RegistryServer;
  let certDir: string;
  let agent: Agent;
  const creds = 'builder:s3cret pass';
  const basic = 'Basic ' + Buffer.from(creds).toString('base64');

  beforeAll(async () => {
    const certs = await makeCerts(path.join(tmp, 'certs'));
    certDir = path.join(tmp, 'skopeo-certs');
    await fsp.mkdir(certDir);
    await fsp.copyFile(certs.daemon.ca, path.join(certDir, 'ca.crt'));
    const htpasswdFile = path.join(tmp, 'htpasswd');
    await fsp.writeFile(htpasswdFile, `# users\nbuilder:${bcrypt.hashSync('s3cret pass', 5)}\nother:${bcrypt.hashSync('x', 5)}\n`);
    const htpasswd = await HtpasswdAuth.load(htpasswdFile);
    const content = await LocalContentStore.open(path.join(tmp, 'secure-content'));
    const tls = { cert: certs.daemon.cert, key: certs.daemon.key };
    // bound on every interface: allowed with TLS and authentication (the tests only use loopback)
    secure = await startRegistryServer({ addr: '0.0.0.0:0', registry: await EmbeddedRegistry.open(path.join(tmp, 'secure'), content), logger: log.logger, tls, auth: { htpasswd, anonymousPull: false } });
    open = await startRegistryServer({ addr: '127.0.0.1:0', registry: await EmbeddedRegistry.open(path.join(tmp, 'open'), content), logger: log.logger, tls, auth: { htpasswd, anonymousPull: true } });
    agent = new Agent({ connect: { ca: await fsp.readFile(certs.daemon.ca) } });
  });

  afterAll(async () => {
    await secure?.stop();
    await open?.stop();
    await agent?.close();
  });

  const loopback = (s: RegistryServer): string => `127.0.0.1:${s.address.split(':').pop()}`;
  const get = (s: RegistryServer, p: string, init: Parameters<typeof ufetch>[1] = {}): ReturnType<typeof ufetch> => ufetch(`https://${loopback(s)}${p}`, { ...init, dispatcher: agent });

  test('skopeo pushes and pulls with the right credentials over verified TLS; without them it is refused', async () => {
    const ref = `${loopback(secure)}/private/busybox:1`;
    await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-cert-dir', certDir, '--dest-creds', creds, `docker://${busybox.ref}`, `docker://${ref}`]);
    const { stdout } = await run('skopeo', ['inspect', '--raw', '--cert-dir', certDir, '--creds', creds, `docker://${ref}`]);
    expect(JSON.parse(stdout).layers[0].digest).toBe(busybox.layerDigest);
    const anonymous = await run('skopeo', ['inspect', '--raw', '--cert-dir', certDir, `docker://${ref}`]).then(() => 'pulled', (err: { stderr: string }) => err.stderr);
    expect(anonymous).toMatch(/unauthorized|authentication required/i);
    const wrong = await run('skopeo', ['inspect', '--raw', '--cert-dir', certDir, '--creds', 'builder:wrong', `docker://${ref}`]).then(() => 'pulled', (err: { stderr: string }) => err.stderr);
    expect(wrong).toMatch(/unauthorized|authentication required/i);
    const base = await get(secure, '/v2/');
    expect(base.status).toBe(401);
    expect(base.headers.get('www-authenticate')).toBe('Basic realm="buildd registry"');
    expect((await get(secure, '/v2/', { headers: { authorization: basic } })).status).toBe(200);
  });

  test('anonymous pull: pulls need no credentials, pushes do, and wrong credentials pull nothing', async () => {
    const ref = `${loopback(open)}/public/busybox:1`;
    await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-cert-dir', certDir, '--dest-creds', creds, `docker://${busybox.ref}`, `docker://${ref}`]);
    const { stdout } = await run('skopeo', ['inspect', '--raw', '--cert-dir', certDir, `docker://${ref}`]);
    expect(JSON.parse(stdout).layers[0].digest).toBe(busybox.layerDigest);
    expect((await get(open, '/v2/public/busybox/manifests/1', { method: 'HEAD' })).status).toBe(200);
    const push = await get(open, '/v2/public/busybox/blobs/uploads/', { method: 'POST' });
    expect(push.status).toBe(401);
    expect((await get(open, '/v2/public/busybox/manifests/1', { headers: { authorization: 'Basic ' + Buffer.from('builder:nope').toString('base64') } })).status).toBe(401);
    // a refused push with a body leaves the connection usable for nothing: it is closed, and the registry goes on
    const refused = await get(open, `/v2/public/busybox/blobs/uploads/?digest=sha256:${'0'.repeat(64)}`, { method: 'POST', body: randomBytes(100_000) });
    expect(refused.status).toBe(401);
    expect((await get(open, '/v2/public/busybox/tags/list')).status).toBe(200);
  });

  test('an htpasswd entry that is not bcrypt is refused when it is loaded', async () => {
    const file = path.join(tmp, 'htpasswd-md5');
    await fsp.writeFile(file, 'user:$apr1$abcdefgh$0123456789012345678901\n');
    await expect(HtpasswdAuth.load(file)).rejects.toThrow(`Cannot load htpasswd ${file}: line 1 (user): only bcrypt entries are accepted (htpasswd -B)`);
  });
});
