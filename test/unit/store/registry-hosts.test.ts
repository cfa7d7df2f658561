import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { RegistryHosts, httpsNotSpoken, loadCaFile, untrustedCertificate } from '../../../store/registry-hosts';
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
    await fsp.writeFile(key, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    await expect(loadCaFile(key)).rejects.toThrow(`Cannot read CA file ${key}: no PEM certificate in it`);
    const broken = path.join(dir, 'broken.pem');
    await fsp.writeFile(broken, '-----BEGIN CERTIFICATE-----\nnot base64 der\n-----END CERTIFICATE-----\n');
    await expect(loadCaFile(broken)).rejects.toThrow(`Cannot read CA file ${broken}: `);
  });
});
