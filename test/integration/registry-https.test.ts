import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../../solver/build-error';
import { LocalContentStore } from '../../store/content-store';
import { RegistryClient, RegistryClientOptions } from '../../store/registry-client';
import { PushImage } from '../../store/registry-push';
import { BusyboxImage, pushBusyboxImage } from '../helpers/busybox-image';
import { makeCerts } from '../helpers/certs';
import { TestRegistry, startRegistry } from '../helpers/registry';

const run = promisify(execFile);
jest.setTimeout(60_000);

// 127.0.0.2 is loopback but not "localhost": clients speak HTTPS to it unless told otherwise,
// as to any registry on the network.
const ADDRESS = '127.0.0.2';

let tmp: string;
let caFile: string;
let otherCaFile: string;
let certDir: string;
let secure: TestRegistry;
let plain: TestRegistry;
let loopback: TestRegistry;
let busybox: BusyboxImage;
let store: LocalContentStore;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-registry-https-'));
  const certs = await makeCerts(path.join(tmp, 'certs'), { sans: [`IP:${ADDRESS}`, 'IP:127.0.0.1'] });
  caFile = certs.daemon.ca;
  otherCaFile = (await makeCerts(path.join(tmp, 'other-certs'))).daemon.ca;
  // skopeo reads the CAs of --cert-dir from *.crt files.
  certDir = path.join(tmp, 'skopeo-certs');
  await fsp.mkdir(certDir);
  await fsp.copyFile(caFile, path.join(certDir, 'ca.crt'));
  secure = await startRegistry({}, { address: ADDRESS, tls: { certificate: certs.daemon.cert, key: certs.daemon.key } });
  plain = await startRegistry({}, { address: ADDRESS });
  loopback = await startRegistry({}, { tls: { certificate: certs.daemon.cert, key: certs.daemon.key } });
  busybox = await pushBusyboxImage(secure.host);
  store = await LocalContentStore.open(path.join(tmp, 'content'));
});

afterAll(async () => {
  await secure?.stop();
  await plain?.stop();
  await loopback?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<BuildError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(BuildError);
  return err as BuildError;
}

/** A client for one test, closed after `use`. */
async function withClient<T>(opts: RegistryClientOptions, use: (client: RegistryClient) => Promise<T>): Promise<T> {
  const client = new RegistryClient(opts);
  try {
    return await use(client);
  } finally {
    await client.close();
  }
}

/** Pulls busybox from `from` (manifest, config and layer into the store) and pushes it as `to`. */
async function pullAndPush(client: RegistryClient, from: string, to: string): Promise<string> {
  const got = await client.resolve(from);
  for (const layer of got.manifest.layers) await client.fetchBlob(from, layer, store);
  await client.fetchBlob(from, got.configDescriptor, store);
  const image: PushImage = { manifest: got.manifestBytes, mediaType: got.mediaType, blobs: [got.configDescriptor, ...got.manifest.layers], store };
  return client.push(to, image);
}

const untrustedMessage = (action: string, ref: string, host: string): RegExp => new RegExp(
  `^Cannot ${action} ${ref.replace(/[.]/g, '\\.')}: the certificate of ${host.replace(/[.]/g, '\\.')} is not trusted \\(.*UNABLE_TO_VERIFY_LEAF_SIGNATURE\\); ` +
  `give the CA that signed it in registry\\."${host.replace(/[.]/g, '\\.')}"\\.ca of the daemon config, or skip verification with registry\\."${host.replace(/[.]/g, '\\.')}"\\.insecure$`);

describe('an HTTPS registry whose certificate comes from a private CA', () => {
  test('with its CA configured: pull and push work, and skopeo verifying with the CA reads the image back', async () => {
    const to = `${secure.host}/verified/app:1`;
    const digest = await withClient({ registries: { [secure.host]: { ca: [caFile] } } }, (c) => pullAndPush(c, busybox.ref, to));
    expect(digest).toBe(busybox.digest);
    const { stdout } = await run('skopeo', ['inspect', '--cert-dir', certDir, '--tls-verify=true', `docker://${to}`]);
    expect(JSON.parse(stdout)).toMatchObject({ Digest: busybox.digest, Layers: [busybox.layerDigest] });
  });

  test('without its CA, a pull is refused naming the registry, the certificate problem and what to configure', async () => {
    const err = await withClient({}, (c) => rejection(c.resolve(busybox.ref)));
    expect(err.code).toBe('failed-precondition');
    expect(err.message).toMatch(untrustedMessage('pull', busybox.ref, secure.host));
  });

  test('without its CA, a push is refused the same way', async () => {
    const to = `${secure.host}/refused/app:1`;
    const err = await withClient({}, async (c) => {
      const got = await withClient({ registries: { [secure.host]: { ca: [caFile] } } }, async (ok) => {
        const r = await ok.resolve(busybox.ref);
        for (const layer of r.manifest.layers) await ok.fetchBlob(busybox.ref, layer, store);
        await ok.fetchBlob(busybox.ref, r.configDescriptor, store);
        return r;
      });
      return rejection(c.push(to, { manifest: got.manifestBytes, mediaType: got.mediaType, blobs: [got.configDescriptor, ...got.manifest.layers], store }));
    });
    expect(err.code).toBe('failed-precondition');
    expect(err.message).toMatch(untrustedMessage('push', to, secure.host));
  });

  test('a CA that did not sign the certificate is refused too', async () => {
    const err = await withClient({ registries: { [secure.host]: { ca: [otherCaFile] } } }, (c) => rejection(c.resolve(busybox.ref)));
    expect(err.code).toBe('failed-precondition');
    expect(err.message).toMatch(untrustedMessage('pull', busybox.ref, secure.host));
  });

  test('a CA file that is not there fails naming the file and the setting', async () => {
    const missing = path.join(tmp, 'no-such-ca.pem');
    const err = await withClient({ registries: { [secure.host]: { ca: [missing] } } }, (c) => rejection(c.resolve(busybox.ref)));
    expect(err.code).toBe('failed-precondition');
    expect(err.message).toBe(`Cannot connect to registry ${secure.host}: registry."${secure.host}".ca: Cannot read CA file ${missing}: ENOENT: no such file or directory, stat '${missing}'`);
  });

  test('insecure: pull and push work without the CA (TLS not verified)', async () => {
    const to = `${secure.host}/insecure/app:1`;
    const digest = await withClient({ registries: { [secure.host]: { insecure: true } } }, (c) => pullAndPush(c, busybox.ref, to));
    expect(digest).toBe(busybox.digest);
    const { stdout } = await run('skopeo', ['inspect', '--cert-dir', certDir, `docker://${to}`]);
    expect(JSON.parse(stdout).Digest).toBe(busybox.digest);
  });

  test('insecureRegistries (the registry.insecure=true output attribute) works the same', async () => {
    const to = `${secure.host}/insecure-attr/app:1`;
    const digest = await withClient({ insecureRegistries: [secure.host] }, (c) => pullAndPush(c, busybox.ref, to));
    expect(digest).toBe(busybox.digest);
  });

  test('insecure falls back to plain HTTP for a registry that does not speak TLS, for pull and push', async () => {
    const to = `${plain.host}/fallback/app:1`;
    await withClient({ registries: { [secure.host]: { insecure: true }, [plain.host]: { insecure: true } } }, async (c) => {
      await pullAndPush(c, busybox.ref, to);
      const got = await c.resolve(to);
      expect(got.digest).toBe(busybox.digest);
    });
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${to}`]);
    expect(JSON.parse(stdout).Digest).toBe(busybox.digest);
  });

  test('http: true speaks plain HTTP to a registry that is not loopback by name', async () => {
    const to = `${plain.host}/http/app:1`;
    await withClient({ registries: { [secure.host]: { ca: [caFile] }, [plain.host]: { http: true } } }, (c) => pullAndPush(c, busybox.ref, to));
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${to}`]);
    expect(JSON.parse(stdout).Digest).toBe(busybox.digest);
  });

  test('on 127.0.0.1 (plain HTTP unless said, as BuildKit): the 400 says to set http to false, and http: false with the CA works', async () => {
    const to = `${loopback.host}/loopback/app:1`;
    const err = await withClient({ registries: { [secure.host]: { ca: [caFile] }, [loopback.host]: { ca: [caFile] } } }, (c) => rejection(pullAndPush(c, busybox.ref, to)));
    expect(err.code).toBe('failed-precondition');
    expect(err.message).toBe(`Cannot push ${to}: ${loopback.host} speaks HTTPS, not plain HTTP (400); set registry."${loopback.host}".http to false in the daemon config`);
    const registries = { [secure.host]: { ca: [caFile] }, [loopback.host]: { ca: [caFile], http: false } };
    expect(await withClient({ registries }, (c) => pullAndPush(c, busybox.ref, to))).toBe(busybox.digest);
  });
});

describe('a registry that asks for a client certificate (mutual TLS)', () => {
  let mutual: TestRegistry;
  let mutualCa: string;
  let keypair: { cert: string; key: string };

  beforeAll(async () => {
    const certs = await makeCerts(path.join(tmp, 'mtls-certs'), { sans: [`IP:${ADDRESS}`] });
    mutualCa = certs.daemon.ca;
    keypair = { cert: path.join(certs.clientDir(), 'cert.pem'), key: path.join(certs.clientDir(), 'key.pem') };
    mutual = await startRegistry({}, { address: ADDRESS, tls: { certificate: certs.daemon.cert, key: certs.daemon.key }, clientCas: [mutualCa], probeClient: keypair });
  });

  afterAll(async () => {
    await mutual?.stop();
  });

  test('with registry.<host>.keypair the client certificate is presented: push and pull work', async () => {
    const to = `${mutual.host}/mtls/busybox:1`;
    const opts: RegistryClientOptions = { registries: { [secure.host]: { ca: [caFile] }, [mutual.host]: { ca: [mutualCa], keypair: [keypair] } } };
    const digest = await withClient(opts, (c) => pullAndPush(c, busybox.ref, to));
    expect((await withClient(opts, (c) => c.resolve(to))).digest).toBe(digest);
  });

  test('without it the registry refuses the connection, and the error names the registry', async () => {
    const err = await rejection(withClient({ registries: { [mutual.host]: { ca: [mutualCa] } } }, (c) => c.resolve(`${mutual.host}/mtls/busybox:1`)));
    expect(err.message).toContain(mutual.host);
  });

  test('a keypair file that is not there fails naming the setting', async () => {
    const err = await rejection(withClient({ registries: { [mutual.host]: { ca: [mutualCa], keypair: [{ cert: path.join(tmp, 'nope.pem'), key: keypair.key }] } } }, (c) => c.resolve(`${mutual.host}/mtls/busybox:1`)));
    expect(err.message).toMatch(new RegExp(`registry\\."${mutual.host.replace(/[.]/g, '\\.')}"\\.keypair: Cannot read client certificate .*nope\\.pem`));
  });
});
