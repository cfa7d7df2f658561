import { execFile } from 'node:child_process';
import { promises as fsp, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { makeCerts } from '../helpers/certs';
import { runBuildctl, startDaemon } from '../helpers/daemon';

const run = promisify(execFile);

describe('certs/make-certs.sh', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-certs-'));
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('puts the SANs it is given in the server certificate and makes named clients with clientAuth, keys 0600', async () => {
    const certs = await makeCerts(dir, { sans: ['DNS:buildd.example.test', 'IP:127.0.0.2'], clients: ['ci', 'laptop'] });
    const { stdout: server } = await run('openssl', ['x509', '-in', certs.daemon.cert, '-noout', '-text']);
    expect(server).toMatch(/DNS:buildd\.example\.test/);
    expect(server).toMatch(/IP Address:127\.0\.0\.2/);
    expect(server).toMatch(/TLS Web Server Authentication/);
    for (const name of ['ci', 'laptop']) {
      const clientDir = certs.clientDir(name);
      const { stdout: client } = await run('openssl', ['x509', '-in', path.join(clientDir, 'cert.pem'), '-noout', '-text']);
      expect(client).toMatch(/TLS Web Client Authentication/);
      await run('openssl', ['verify', '-CAfile', path.join(clientDir, 'ca.pem'), path.join(clientDir, 'cert.pem')]);
      expect(statSync(path.join(clientDir, 'key.pem')).mode & 0o777).toBe(0o600);
    }
    expect(statSync(certs.daemon.key).mode & 0o777).toBe(0o600);
  });

  test('a client added later to the same CA reaches the daemon', async () => {
    const daemon = await startDaemon({ extraArgs: [] });
    try {
      // The daemon's own certificates: add a named client signed by the same CA.
      const certsDir = daemon.certsDir as string;
      await run('bash', [path.resolve(__dirname, '..', '..', 'certs', 'make-certs.sh'), certsDir, '--client', 'ci']);
      const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(certsDir, 'client', 'ci'), '--tlsservername', 'localhost', 'debug', 'info']);
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
    } finally {
      await daemon.stop();
    }
  }, 60_000);
});
