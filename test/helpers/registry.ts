import { ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream, promises as fsp } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { TOKEN_ISSUER, TOKEN_SERVICE, TokenServer, startTokenServer } from './token-server';
import { waitFor } from './wait-for';

/** How the registry wants clients to authenticate, if at all. */
export interface RegistryAuthOptions {
  /** `Basic` challenge, checked against an htpasswd (bcrypt) file. */
  htpasswd?: { user: string; pass: string };
  /** `Bearer` challenge, tokens from a local token server (see token-server.ts), over HTTPS with `tls`. */
  token?: { user: string; pass: string; tls?: { certificate: string; key: string } };
}

/** Where and how the registry listens. */
export interface RegistryListenOptions {
  /** A loopback address (default 127.0.0.1); 127.0.0.2 is not "localhost", so clients default to HTTPS for it. */
  address?: string;
  /** Serve HTTPS with this certificate and key (PEM files), e.g. from makeCerts. */
  tls?: { certificate: string; key: string };
  /**
   * With `tls`: refuse clients without a certificate signed by one of these CAs (distribution's
   * tls.clientcas); `probeClient` is the certificate the readiness probe presents.
   */
  clientCas?: string[];
  probeClient?: { cert: string; key: string };
}

/**
 * A real `docker-registry serve` (CNCF distribution, found through PATH) on a free loopback
 * port, over HTTP or HTTPS, with its own temporary config and storage.
 *
 * Lifecycle: `startRegistry` returns once GET /v2/ answers; `stop` kills the process (and the
 * token server, if any) and removes the directory. Call `stop` in afterAll.
 */
export interface TestRegistry {
  /** `ADDRESS:PORT` (127.0.0.1 unless said) */
  host: string;
  /** whether it speaks HTTPS */
  tls: boolean;
  /** The registry's log file (stdout and stderr). */
  logPath: string;
  /** The registry's storage root (filesystem driver), for tests that corrupt a blob on purpose. */
  storageDir: string;
  tokenServer?: TokenServer;
  stop(): Promise<void>;
}

/** A free loopback TCP port on `address`: bind port 0, read it, let it go. */
export async function freePort(address = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function bcryptLine(user: string, pass: string): Promise<string> {
  // The registry accepts only bcrypt; python's crypt has it where apache2-utils is missing.
  // Cost 4 (rounds=16): the registry checks the hash on every request, and this is a test.
  const script = 'import crypt,sys;print(sys.argv[1]+":"+crypt.crypt(sys.argv[2],crypt.mksalt(crypt.METHOD_BLOWFISH,rounds=16)))';
  const { stdout } = await promisify(execFile)('python3', ['-W', 'ignore', '-c', script, user, pass]);
  if (!stdout.includes(':$2')) throw new Error('Cannot make an htpasswd entry: python3 crypt has no bcrypt');
  return stdout;
}

async function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function startRegistry(auth: RegistryAuthOptions = {}, listen: RegistryListenOptions = {}): Promise<TestRegistry> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-registry-'));
  let tokenServer: TokenServer | undefined;
  let child: ChildProcess | undefined;
  // The readiness probe does not judge the certificate: the tests do.
  let probe = listen.tls
    ? new Agent({ connect: { rejectUnauthorized: false, ...(listen.probeClient ? { cert: await fsp.readFile(listen.probeClient.cert), key: await fsp.readFile(listen.probeClient.key) } : {}) } })
    : undefined;
  const closeProbe = async (): Promise<void> => {
    const p = probe;
    probe = undefined;
    await p?.close();
  };
  const stop = async (): Promise<void> => {
    await closeProbe();
    if (child && !(await exited(child, 0))) {
      child.kill('SIGTERM');
      if (!(await exited(child, 5000))) {
        child.kill('SIGKILL');
        await exited(child, 5000);
      }
    }
    await tokenServer?.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  };
  try {
    const storageDir = path.join(dir, 'data');
    const address = listen.address ?? '127.0.0.1';
    const port = await freePort(address);
    const host = `${address}:${port}`;
    let authYaml = '';
    if (auth.htpasswd) {
      await fsp.writeFile(path.join(dir, 'htpasswd'), await bcryptLine(auth.htpasswd.user, auth.htpasswd.pass));
      authYaml = `auth:\n  htpasswd: {realm: buildd-test, path: ${path.join(dir, 'htpasswd')}}\n`;
    } else if (auth.token) {
      tokenServer = await startTokenServer(dir, auth.token.user, auth.token.pass, auth.token.tls);
      authYaml = `auth:\n  token: {realm: "${tokenServer.realm}", service: ${TOKEN_SERVICE}, issuer: ${TOKEN_ISSUER}, rootcertbundle: ${tokenServer.certPath}}\n`;
    }
    const config = [
      'version: 0.1',
      'log: {level: info, accesslog: {disabled: false}}',
      `storage: {filesystem: {rootdirectory: ${storageDir}}, delete: {enabled: true}}`,
      listen.tls
        ? `http: {addr: "${host}", tls: {certificate: "${listen.tls.certificate}", key: "${listen.tls.key}"${listen.clientCas ? `, clientcas: [${listen.clientCas.map((c) => `"${c}"`).join(', ')}]` : ''}}}`
        : `http: {addr: "${host}"}`,
      authYaml,
    ].join('\n');
    const configPath = path.join(dir, 'config.yml');
    await fsp.writeFile(configPath, config);
    const logPath = path.join(dir, 'registry.log');
    const log = createWriteStream(logPath);
    await new Promise((resolve) => log.once('open', resolve));
    child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', log, log] });
    const proc = child;
    // A registry that dies (bad config, port taken) fails the start at once, not at the deadline.
    let onExit = (): void => undefined;
    const died = new Promise<never>((_resolve, reject) => {
      onExit = () => void fsp.readFile(logPath, 'utf8').then((text) => reject(new Error(`docker-registry exited: ${text}`)), reject);
      proc.once('exit', onExit);
      // Not on PATH: spawn reports it as an error event, and there is no exit.
      proc.once('error', (err) => reject(new Error(`Cannot start docker-registry: ${err.message}`)));
    });
    try {
      await Promise.race([died, waitFor(`docker-registry on ${host}`, async () => {
        const res = await request(`${listen.tls ? 'https' : 'http'}://${host}/v2/`, { headersTimeout: 1000, dispatcher: probe });
        await res.body.dump();
        return res.statusCode === 200 || res.statusCode === 401 ? true : undefined;
      })]);
    } finally {
      proc.off('exit', onExit);
      died.catch(() => undefined);
    }
    log.close();
    await closeProbe();
    return { host, tls: listen.tls !== undefined, logPath, storageDir, tokenServer, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
