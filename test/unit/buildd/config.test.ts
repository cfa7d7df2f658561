import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAddress } from '../../../buildd/api/address';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('daemon config', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const write = async (json: unknown): Promise<string> => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify(json));
    return f;
  };

  it('has defaults without flags or file', async () => {
    await expect(resolveConfig([])).resolves.toEqual({
      addr: ['unix:///run/buildd/buildd.sock'],
      root: '/var/lib/buildd',
      tls: { ca: undefined, cert: undefined, key: undefined },
      insecureTcp: false,
      registry: {},
      maxParallelism: undefined,
      debug: false,
      insecureEntitlements: [],
      rootless: false,
      noProcessSandbox: false,
      snapshotter: 'auto',
      registryAnonymousPull: false,
      shutdownGraceMs: 20_000,
      logLevel: 'info',
    });
  });

  it('takes the health and debug addresses and the shutdown grace period from flags or the file', async () => {
    const flags = await resolveConfig(['--health-addr', 'tcp://0.0.0.0:8081', '--debugaddr', '127.0.0.1:6060', '--shutdown-grace', '5m']);
    expect(flags).toMatchObject({ healthAddr: 'tcp://0.0.0.0:8081', debugAddr: '127.0.0.1:6060', shutdownGraceMs: 300_000 });
    const f = await write({ healthAddr: 'unix:///run/buildd/health.sock', debugAddr: '[::1]:6060', shutdownGrace: 90 });
    expect(await resolveConfig(['--config', f])).toMatchObject({ healthAddr: 'unix:///run/buildd/health.sock', debugAddr: '[::1]:6060', shutdownGraceMs: 90_000 });
    expect((await resolveConfig(['--config', f, '--shutdown-grace', '0'])).shutdownGraceMs).toBe(0);
    await expect(resolveConfig(['--shutdown-grace', 'soon'])).rejects.toThrow(/Cannot configure the shutdown grace period: .*Go duration/);
    await expect(resolveConfig(['--shutdown-grace', '25h'])).rejects.toThrow(/more than 24h/);
  });

  it('sets the log level by --log-level, the file, or --debug', async () => {
    expect((await resolveConfig(['--debug'])).logLevel).toBe('debug');
    expect((await resolveConfig(['--debug', '--log-level', 'warn'])).logLevel).toBe('warn');
    const f = await write({ logLevel: 'error', history: { maxEntries: 10, maxAge: 3600 }, otel: { endpoint: 'http://127.0.0.1:4318', serviceName: 'ci-buildd' } });
    expect(await resolveConfig(['--config', f])).toMatchObject({ logLevel: 'error', history: { maxEntries: 10, maxAge: 3600 }, otel: { endpoint: 'http://127.0.0.1:4318', serviceName: 'ci-buildd' } });
    await expect(resolveConfig(['--log-level', 'loud'])).rejects.toThrow();
  });

  it('takes mirrors per registry, as BuildKit\'s [registry."host"] mirrors', async () => {
    const f = await write({ registry: { 'docker.io': { mirrors: ['mirror.local:5000', 'mirror2.local'] } } });
    expect((await resolveConfig(['--config', f])).registry).toEqual({ 'docker.io': { mirrors: ['mirror.local:5000', 'mirror2.local'] } });
    const g = await write({ registry: { 'docker.io': { mirrors: 'one' } } });
    await expect(resolveConfig(['--config', g])).rejects.toThrow(/mirrors/);
  });

  it('configures the embedded registry: its own certificate or the daemon\'s, htpasswd, anonymous pull', async () => {
    const own = await resolveConfig(['--registry-addr', '127.0.0.1:5000', '--registry-tlscert', 'c.pem', '--registry-tlskey', 'k.pem', '--registry-htpasswd', 'h', '--registry-anonymous-pull']);
    expect(own).toMatchObject({ registryAddr: '127.0.0.1:5000', registryTls: { cert: 'c.pem', key: 'k.pem' }, registryHtpasswd: 'h', registryAnonymousPull: true });
    const daemons = await resolveConfig(['--registry-addr', '0.0.0.0:5000', '--registry-tls', '--tlscacert', 'a', '--tlscert', 'b', '--tlskey', 'c']);
    expect(daemons.registryTls).toEqual({ cert: 'b', key: 'c' });
    const f = await write({ registryAddr: '127.0.0.1:1', registryTlsCert: 'x', registryTlsKey: 'y', registryHtpasswd: 'z', registryAnonymousPull: true });
    expect(await resolveConfig(['--config', f])).toMatchObject({ registryTls: { cert: 'x', key: 'y' }, registryHtpasswd: 'z', registryAnonymousPull: true });
    await expect(resolveConfig(['--registry-addr', '127.0.0.1:1', '--registry-tls'])).rejects.toThrow(/the daemon has none/);
    await expect(resolveConfig(['--registry-addr', '127.0.0.1:1', '--registry-tlscert', 'c'])).rejects.toThrow(/must be given together/);
    await expect(resolveConfig(['--registry-addr', '127.0.0.1:1', '--registry-anonymous-pull'])).rejects.toThrow(/needs --registry-htpasswd/);
    await expect(resolveConfig(['--registry-htpasswd', 'h'])).rejects.toThrow(/need --registry-addr/);
  });

  it('reads the file and lets flags override it; --addr repeats', async () => {
    const f = await write({
      addr: ['tcp://0.0.0.0:1'],
      root: '/from-file',
      tls: { ca: 'a', cert: 'b', key: 'c' },
      registry: { 'localhost:5000': { insecure: true } },
      maxParallelism: 3,
    });
    const c = await resolveConfig(['--config', f, '--root', '/flag', '--addr', 'unix:///a.sock', '--addr', 'tcp://127.0.0.1:2', '--tlskey', 'k']);
    expect(c).toMatchObject({
      addr: ['unix:///a.sock', 'tcp://127.0.0.1:2'],
      root: '/flag',
      tls: { ca: 'a', cert: 'b', key: 'k' },
      registry: { 'localhost:5000': { insecure: true } },
      maxParallelism: 3,
    });
  });

  it('names the bad field of a config file', async () => {
    const f = await write({ root: 5 });
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: root: Expected string, received number`);
    const g = await write({ registry: { r: { insecure: 'yes' } } });
    await expect(resolveConfig(['--config', g])).rejects.toThrow(`Cannot load config ${g}: registry.r.insecure: Expected boolean, received string`);
    const h = await write({ rooot: '/x' });
    await expect(resolveConfig(['--config', h])).rejects.toThrow(/Unrecognized key\(s\) in object: 'rooot'/);
  });

  it('refuses a file that is not JSON, and partial TLS flags', async () => {
    const f = path.join(dir, 'bad.json');
    await fsp.writeFile(f, '{');
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}:`);
    await expect(resolveConfig(['--tlscert', 'x'])).rejects.toThrow(/must be given together/);
  });

  it('parses listen addresses', () => {
    expect(parseAddress('tcp://127.0.0.1:1234')).toMatchObject({ kind: 'tcp', host: '127.0.0.1', port: 1234 });
    expect(parseAddress('tcp://[::1]:80')).toMatchObject({ kind: 'tcp', host: '[::1]', port: 80 });
    expect(parseAddress('unix:///run/b.sock')).toMatchObject({ kind: 'unix', path: '/run/b.sock' });
    expect(() => parseAddress('unix://rel.sock')).toThrow(/absolute/);
    expect(() => parseAddress('http://x:1')).toThrow(/expected tcp/);
    expect(() => parseAddress('tcp://x:99999')).toThrow(/expected tcp/);
  });
});
