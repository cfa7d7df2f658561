import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { daemonConfigFileSchema } from '../../../../buildd/config';
import { configCommand } from '../../../../buildd/config-file/config-command';
import { jsonConfigToToml } from '../../../../buildd/config-file/json-config-to-toml';
import { parseConfigText } from '../../../../buildd/config-file/load-config-file';
import { jsonToToml } from '../../../../buildd/config-file/map-config-keys';
import { objectKeysAt } from '../../../../buildd/config-file/schema-at';
import { TOML_KEYS } from '../../../../buildd/config-file/toml-keys';

/** A JSON config with every key set (the test checks that it is every key). */
const EVERY_KEY = {
  addr: ['tcp://0.0.0.0:1234', 'unix:///run/buildd/buildd.sock'],
  root: '/var/lib/buildd',
  tls: { ca: '/etc/buildd/ca.pem', cert: '/etc/buildd/cert.pem', key: '/etc/buildd/key.pem' },
  insecureTcp: false,
  registry: {
    'docker.io': { mirrors: ['mirror.local:5000'], http: false, insecure: true, ca: ['/etc/buildd/myca.pem'], keypair: [{ cert: '/c.pem', key: '/k.pem' }] },
    'localhost:5000': { http: true },
    'empty.example': {},
  },
  maxParallelism: 8,
  debug: true,
  cniConfigPath: '/etc/buildd/cni.conflist',
  cniBinaryDir: '/opt/cni/bin',
  cniPoolSize: 4,
  insecureEntitlements: ['network.host', 'security.insecure'],
  stepLimits: { memory: '2g', pids: 4096, cpus: 1.5 },
  cgroupParent: '/buildd',
  rootless: false,
  noProcessSandbox: false,
  snapshotter: 'overlayfs',
  registryAddr: '127.0.0.1:5000',
  registryTls: false,
  registryTlsCert: '/r.pem',
  registryTlsKey: '/rk.pem',
  registryHtpasswd: '/etc/buildd/htpasswd',
  registryAnonymousPull: true,
  keptLocals: { maxKeys: 16, maxBytes: 1073741824 },
  maxLayerBytes: 68719476736,
  gc: {
    enabled: true,
    keepStorage: '20GB',
    interval: 300,
    policy: [{ keepBytes: '512MB', keepDuration: '48h', filters: ['type==source.local', 'type==exec.cachemount'] }, { all: true, keepBytes: 10000000000, keepDuration: 5184000 }],
  },
  healthAddr: 'tcp://0.0.0.0:8081',
  debugAddr: '127.0.0.1:6060',
  shutdownGrace: '30s',
  logLevel: 'info',
  history: { maxEntries: 50, maxAge: 172800 },
  otel: { endpoint: 'http://127.0.0.1:4318', serviceName: 'buildd "ci"\n[runner]' },
};

/** Whether TOML_KEYS places the JSON key at `json`: itself, or every key of its object. */
function reachable(json: string[]): boolean {
  if (TOML_KEYS.some((k) => k.json.length === json.length && k.json.every((s, i) => s === json[i]))) return true;
  const below = objectKeysAt(daemonConfigFileSchema, json);
  const placedBelow = TOML_KEYS.some((k) => k.json.length > json.length && json.every((s, i) => s === k.json[i]));
  return below !== undefined && placedBelow && below.every((key) => reachable([...json, key]));
}

describe('buildd config convert', () => {
  it('has a TOML key for every key of the JSON config', () => {
    const keys = objectKeysAt(daemonConfigFileSchema, []) ?? [];
    expect(keys.length).toBeGreaterThanOrEqual(30);
    expect(keys.filter((k) => !reachable([k]))).toEqual([]);
  });

  it('the test config sets every key', () => {
    expect(Object.keys(EVERY_KEY).sort()).toEqual((objectKeysAt(daemonConfigFileSchema, []) ?? []).sort());
    expect(Object.keys(EVERY_KEY.gc).sort()).toEqual((objectKeysAt(daemonConfigFileSchema, ['gc']) ?? []).sort());
  });

  it('writes TOML that loads back to the same config', () => {
    const toml = jsonConfigToToml(JSON.stringify(EVERY_KEY), '/etc/buildd/buildd.json');
    expect(parseConfigText(toml, 'converted.toml')).toEqual(parseConfigText(JSON.stringify(EVERY_KEY), 'original.json'));
    expect(toml).toMatch(/^# buildd\.toml, converted from \/etc\/buildd\/buildd\.json by `buildd config convert`\./);
    expect(toml).toContain('\n[worker.oci]\n');
    expect(toml).toContain('\nmax-parallelism = 8\n');
    expect(toml).toContain('\n[[worker.oci.gcpolicy]]\n');
    expect(toml).toContain('\n[registry."docker.io"]\n');
    expect(toml).toContain('\n[[registry."docker.io".keypair]]\n');
    // values as given: the size stays a size
    expect(toml).toContain('\nmemory = "2g"\n');
  });

  it('writes a config of a few keys as a few keys', () => {
    const toml = jsonConfigToToml(JSON.stringify({ root: '/x', registry: { 'docker.io': { mirrors: ['m:5000'] } } }), 'c.json');
    expect(toml.split('\n').filter((l) => l !== '' && !l.startsWith('#'))).toEqual(['root = "/x"', '[registry."docker.io"]', 'mirrors = [ "m:5000" ]']);
  });

  it('refuses a JSON config the daemon would refuse', () => {
    expect(() => jsonConfigToToml('{ "root": ', 'c.json')).toThrow(/^Cannot convert config c\.json: .*JSON/);
    expect(() => jsonConfigToToml(JSON.stringify({ rot: '/x' }), 'c.json')).toThrow(/^Cannot convert config c\.json: Unrecognized key\(s\) in object: 'rot'$/);
    expect(() => jsonConfigToToml(JSON.stringify({ maxParallelism: 0 }), 'c.json')).toThrow(/^Cannot convert config c\.json: maxParallelism: /);
  });

  it('refuses to drop a key that has no place in TOML', () => {
    expect(() => jsonToToml({ root: '/x', gc: { enabled: true, sometime: 1 } })).toThrow('Cannot convert the config: its key gc.sometime has no TOML key');
    expect(() => jsonToToml({ newKey: 1 })).toThrow('Cannot convert the config: its key newKey has no TOML key');
  });

  it('prints the TOML of a file: buildd config convert FILE', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-convert-'));
    try {
      const file = path.join(dir, 'buildd.json');
      await fsp.writeFile(file, JSON.stringify(EVERY_KEY));
      let printed = '';
      await configCommand((text) => (printed += text)).parseAsync(['convert', file], { from: 'user' });
      expect(printed).toBe(jsonConfigToToml(JSON.stringify(EVERY_KEY), file));
      await expect(configCommand(() => undefined).parseAsync(['convert', path.join(dir, 'nope.json')], { from: 'user' })).rejects.toThrow(/^Cannot convert config .*nope\.json: ENOENT/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
