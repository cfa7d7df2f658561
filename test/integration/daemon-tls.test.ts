import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeCerts } from '../helpers/certs';
import { runBuildctl, runBuildd, startDaemon, type TestDaemon } from '../helpers/daemon';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(120_000);

/**
 * The daemon process over real mutual TLS on loopback: who gets through the handshake, what
 * it refuses to start with, and how it stops.
 */
describe('buildd over mutual TLS', () => {
  let daemon: TestDaemon;
  let tmp: string;
  let sock: string;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-tls-'));
    sock = path.join(tmp, 'run', 'buildd.sock');
    daemon = await startDaemon({ tls: true, extraArgs: ['--addr', `unix://${sock}`] });
  });
  afterAll(async () => {
    await daemon?.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const info = (...flags: string[]) => runBuildctl(['--addr', daemon.addr, ...flags, 'debug', 'info']);

  it('lets a client with a certificate of its CA reach Info', async () => {
    const res = await info('--tlsdir', path.join(daemon.certsDir as string, 'client'));
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^BuildKit: buildd \d+\.\d+\.\d+ \(buildd\.v1\)\n$/);
  });

  it('refuses a client without a certificate in the handshake', async () => {
    const res = await info('--tlscacert', path.join(daemon.certsDir as string, 'ca.pem'));
    expect(res.code).toBe(1);
    // "Cannot reach the daemon" is only said of UNAVAILABLE without the daemon's error metadata:
    // the call never reached the service
    expect(res.stderr).toMatch(/^ERROR: Cannot reach the daemon: No connection established.*certificate required/);
  });

  it('refuses a client whose certificate comes from another CA', async () => {
    const other = await makeCerts(path.join(tmp, 'other'));
    const client = other.clientDir();
    const res = await info(
      '--tlscacert', path.join(daemon.certsDir as string, 'ca.pem'),
      '--tlscert', path.join(client, 'cert.pem'),
      '--tlskey', path.join(client, 'key.pem'),
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^ERROR: Cannot reach the daemon: No connection established/);
  });

  it('refuses to talk to a daemon whose certificate does not carry --tlsservername', async () => {
    const res = await info('--tlsdir', path.join(daemon.certsDir as string, 'client'), '--tlsservername', 'wrong.example');
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^ERROR: Cannot reach the daemon: .*wrong\.example/);
    const ok = await info('--tlsdir', path.join(daemon.certsDir as string, 'client'), '--tlsservername', 'localhost');
    expect(ok.code).toBe(0);
  });

  it('serves a unix socket of mode 0660 beside the tcp listener, without TLS', async () => {
    const st = await fsp.stat(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    const res = await runBuildctl(['debug', 'info'], { BUILDKIT_HOST: `unix://${sock}` });
    expect(res.code).toBe(0);
  });

  it('sends a builder failure to the client as one `ERROR: failed to solve:` line without a stack trace, and removes the session dir', async () => {
    const ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(ctx, { recursive: true });
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\n');
    const res = await runBuildctl([
      '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('ERROR: failed to solve: Cannot build: the test daemon has no builder\n');
    await waitFor('the session dir to be removed', async () => {
      // the sessions dir itself stays: its absence would make this check vacuous
      const left = await fsp.readdir(path.join(daemon.root, 'sessions'));
      return left.length === 0 ? true : undefined;
    });
  });

  it('exits 0 on SIGTERM and removes its socket', async () => {
    const d = await startDaemon({ tls: true, extraArgs: ['--addr', `unix://${path.join(tmp, 'second.sock')}`] });
    expect(await d.stop()).toBe(0);
    await expect(fsp.lstat(path.join(tmp, 'second.sock'))).rejects.toThrow(/ENOENT/);
  });
});

describe('buildd start-up checks', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-start-'));
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('refuses tcp without TLS', async () => {
    const res = await runBuildd(['--addr', 'tcp://127.0.0.1:0', '--root', path.join(tmp, 'r1')]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('buildd: Cannot listen on tcp://127.0.0.1:0: tcp without TLS is refused');
  });

  it('serves tcp without TLS with --insecure-tcp, and warns', async () => {
    const d = await startDaemon({ tls: false });
    try {
      expect(d.stderr()).toContain('without TLS');
      const res = await runBuildctl(['--addr', d.addr, 'debug', 'info']);
      expect(res.code).toBe(0);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('names the bad field of --config', async () => {
    const file = path.join(tmp, 'bad.json');
    await fsp.writeFile(file, JSON.stringify({ root: 42 }));
    const res = await runBuildd(['--config', file]);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(`buildd: Cannot load config ${file}: root: Expected string, received number\n`);
  });
});
