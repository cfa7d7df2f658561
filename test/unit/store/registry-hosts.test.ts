import { promises as fsp } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { BuildError } from '../../../solver/build-error';
import { RegistryHosts, hostKey, httpsNotSpoken, loadCaFile, untrustedCertificate } from '../../../store/registry-hosts';
import { makeCerts } from '../../helpers/certs';

const withCode = (code: string, message = 'x'): Error => Object.assign(new Error(message), { code });

describe('RegistryHosts', () => {
  const hosts = new RegistryHosts({
    'reg.lan:5000': { insecure: true },
    'strict.lan': { insecure: true, http: false },
    'docker.io': { insecure: true },
  });

  test('insecure starts with HTTPS and stays on plain HTTP once learned, for that host only', () => {
    expect(hosts.scheme('reg.lan:5000')).toBe('https');
    expect(hosts.mayFallBack('reg.lan:5000')).toBe(true);
    hosts.learnPlainHttp('reg.lan:5000');
    expect(hosts.scheme('reg.lan:5000')).toBe('http');
    expect(hosts.scheme('reg.lan:5001')).toBe('https');
    expect(hosts.mayFallBack('reg.lan:5001')).toBe(false);
  });

  test('insecure with http: false never falls back to plain HTTP', () => {
    expect(hosts.mayFallBack('strict.lan')).toBe(false);
  });

  test("Docker Hub's settings apply to its API host", () => {
    expect(hosts.mayFallBack('docker.io')).toBe(true);
    expect(hosts.mayFallBack('registry-1.docker.io')).toBe(true);
  });
});

describe('hostKey: one name for a host, whether it comes with the default HTTPS port or not', () => {
  test.each([
    ['reg.lan', 'reg.lan'],
    ['reg.lan:443', 'reg.lan'],
    ['Reg.LAN:443', 'reg.lan'],
    ['reg.lan:5000', 'reg.lan:5000'],
    ['reg.lan:4430', 'reg.lan:4430'],
    ['reg.lan:80', 'reg.lan:80'],
    ['127.0.0.2:443', '127.0.0.2'],
    ['[::1]:443', '[::1]'],
    ['docker.io', 'registry-1.docker.io'],
    ['docker.io:443', 'registry-1.docker.io'],
  ])('%s → %s', (host, key) => {
    expect(hostKey(host)).toBe(key);
  });

  test('a key with :443 applies to the image name without it and the other way round', () => {
    const hosts = new RegistryHosts({ 'with-port.lan:443': { insecure: true }, 'without-port.lan': { insecure: true, http: false } });
    for (const name of ['with-port.lan', 'with-port.lan:443', 'without-port.lan', 'without-port.lan:443']) {
      expect(hosts.scheme(name)).toBe('https');
    }
    expect(hosts.mayFallBack('with-port.lan')).toBe(true);
    expect(hosts.mayFallBack('with-port.lan:443')).toBe(true);
    expect(hosts.mayFallBack('without-port.lan:443')).toBe(false);
    expect(hosts.mayFallBack('with-port.lan:5000')).toBe(false);
    hosts.learnPlainHttp('with-port.lan:443');
    expect(hosts.scheme('with-port.lan')).toBe('http');
  });

  test('keys naming the same host are merged, a later setting winning', () => {
    const hosts = new RegistryHosts({ 'reg.lan:443': { http: false, ca: ['/a.pem'] }, 'reg.lan': { insecure: true, ca: ['/b.pem'] } });
    expect(hosts.mayFallBack('reg.lan')).toBe(false);
    expect(hosts.scheme('reg.lan:443')).toBe('https');
    const plain = new RegistryHosts({ 'reg.lan': { http: false }, 'reg.lan:443': { http: true } });
    expect(plain.scheme('reg.lan')).toBe('http');
  });
});

describe('RegistryHosts.connect: the TLS settings of a host configured with :443', () => {
  let dir: string;
  let server: tls.Server;
  let port: number;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-hosts-connect-'));
    const certs = await makeCerts(path.join(dir, 'certs'));
    server = tls.createServer({ cert: await fsp.readFile(certs.daemon.cert), key: await fsp.readFile(certs.daemon.key) }, (socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  /**
   * Connects as undici does for the origin `https://127.0.0.1:443`, whose `host` it gives
   * without the default port; the socket goes to the test server's port instead of 443.
   */
  const connectAs443 = (hosts: RegistryHosts): Promise<Error | null> => new Promise((resolve) => {
    hosts.connect({ host: '127.0.0.1', hostname: '127.0.0.1', protocol: 'https:', port: String(port) }, (err, socket) => {
      socket?.destroy();
      resolve(err);
    });
  });

  test('insecure under "127.0.0.1:443" skips verification for the origin undici calls 127.0.0.1', async () => {
    expect(await connectAs443(new RegistryHosts({ '127.0.0.1:443': { insecure: true } }))).toBeNull();
  });

  test('without the setting the same connection is refused: the certificate is not trusted', async () => {
    const err = await connectAs443(new RegistryHosts({}));
    expect((err as NodeJS.ErrnoException | null)?.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  test('a missing CA file under "127.0.0.1:443" fails naming the key as configured', async () => {
    const missing = path.join(dir, 'missing.pem');
    const err = await connectAs443(new RegistryHosts({ '127.0.0.1:443': { ca: [missing] } }));
    expect(err).toBeInstanceOf(BuildError);
    expect(err?.message).toBe(`Cannot connect to registry 127.0.0.1:443: registry."127.0.0.1:443".ca: Cannot read CA file ${missing}: ENOENT: no such file or directory, stat '${missing}'`);
  });
});

describe('errors that decide a fallback or an explanation', () => {
  test('a host that answers TLS with plain HTTP does not speak HTTPS', () => {
    expect(httpsNotSpoken(withCode('ERR_SSL_WRONG_VERSION_NUMBER'), 'reg.lan:5000')).toBe(true);
    expect(httpsNotSpoken(withCode('ERR_SSL_PACKET_LENGTH_TOO_LONG'), 'reg.lan:5000')).toBe(true);
  });

  test('a refused connection means "try port 80" only when no port was given, as in BuildKit', () => {
    expect(httpsNotSpoken(withCode('ECONNREFUSED'), 'reg.lan')).toBe(true);
    expect(httpsNotSpoken(withCode('ECONNREFUSED'), 'reg.lan:5000')).toBe(false);
    expect(httpsNotSpoken(withCode('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'reg.lan')).toBe(false);
  });

  test('certificate failures are recognised with their reason, other errors are not', () => {
    expect(untrustedCertificate(withCode('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate')))
      .toBe('unable to verify the first certificate, UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(untrustedCertificate(withCode('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames")))
      .toBe("Hostname/IP does not match certificate's altnames, ERR_TLS_CERT_ALTNAME_INVALID");
    expect(untrustedCertificate(withCode('ECONNREFUSED'))).toBeUndefined();
    expect(untrustedCertificate(new Error('plain'))).toBeUndefined();
  });
});

describe('loadCaFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-ca-file-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('reads a PEM CA certificate', async () => {
    const certs = await makeCerts(path.join(dir, 'certs'));
    await expect(loadCaFile(certs.daemon.ca)).resolves.toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  test('refuses a missing file and a file with no certificate, naming the file', async () => {
    const missing = path.join(dir, 'missing.pem');
    const err = await loadCaFile(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toBe(`Cannot read CA file ${missing}: ENOENT: no such file or directory, stat '${missing}'`);
    const key = path.join(dir, 'key.pem');
    // a PEM that holds no certificate (a key's shape, made here: no key is kept in git)
    const pem = (label: string): string => `-----${label} ${['PRIVATE', 'KEY'].join(' ')}-----`;
    await fsp.writeFile(key, `${pem('BEGIN')}\nAAAA\n${pem('END')}\n`);
    await expect(loadCaFile(key)).rejects.toThrow(`Cannot read CA file ${key}: no PEM certificate in it`);
    const broken = path.join(dir, 'broken.pem');
    await fsp.writeFile(broken, '-----BEGIN CERTIFICATE-----\nnot base64 der\n-----END CERTIFICATE-----\n');
    await expect(loadCaFile(broken)).rejects.toThrow(`Cannot read CA file ${broken}: `);
  });
});
