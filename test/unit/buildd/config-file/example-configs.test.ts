import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parseConfigText } from '../../../../buildd/config-file/load-config-file';
import { objectKeysAt, type KeyPath } from '../../../../buildd/config-file/schema-at';
import { tomlConfigSchema } from '../../../../buildd/config-file/toml-config-schema';

const REPO = path.resolve(__dirname, '..', '..', '..', '..');

/** BuildKit's docs/buildkitd.toml.md example, cut to the keys buildd has, its layout and comments kept. */
const BUILDKIT_STYLE = `
# root is where all buildkit state is stored.
root = "/var/lib/buildkit"
# insecure-entitlements allows insecure entitlements, disabled by default.
insecure-entitlements = [ "network.host", "security.insecure" ]

[log]
  # log level (error/warn/info/debug/trace)
  level = "info"

[grpc]
  address = [ "tcp://0.0.0.0:1234" ]
  # debugAddress is address for attaching go profiles and debuggers.
  debugAddress = "0.0.0.0:6060"
  [grpc.tls]
    cert = "/etc/buildkit/tls.crt"
    key = "/etc/buildkit/tls.key"
    ca = "/etc/buildkit/tlsca.crt"

# config for build history API that stores information about completed build commands
[history]
  # maxAge is the maximum age of history entries to keep, in seconds.
  maxAge = 172800
  # maxEntries is the maximum number of history entries to keep.
  maxEntries = 50

[worker.oci]
  snapshotter = "auto" # overlayfs or native, default value is "auto".
  rootless = false # see docs/rootless.md for the details on rootless mode.
  # gc enables/disables garbage collection
  gc = true
  gckeepstorage = 9000
  # limit the number of parallel build steps that can run at the same time
  max-parallelism = 4
  cniPoolSize = 16

  [[worker.oci.gcpolicy]]
    keepBytes = 512000000
    keepDuration = 172800
    filters = [ "type==source.local", "type==exec.cachemount", "type==source.git.checkout"]
  [[worker.oci.gcpolicy]]
    all = true
    keepBytes = 1024000000

# registry configures a new Docker register used for cache import or output.
[registry."docker.io"]
  mirrors = ["yourmirror.local:5000", "core.harbor.domain/proxy.docker.io"]
  http = true
  insecure = true
  ca=["/etc/config/myca.pem"]
  [[registry."docker.io".keypair]]
    key="/etc/config/key.pem"
    cert="/etc/config/cert.pem"

# optionally mirror configuration can be done by defining it as a registry.
[registry."yourmirror.local:5000"]
  http = true
`;

describe('example configs', () => {
  it('loads a buildkitd.toml that uses only keys buildd has', () => {
    expect(parseConfigText(BUILDKIT_STYLE, 'buildkitd.toml')).toEqual({
      root: '/var/lib/buildkit',
      insecureEntitlements: ['network.host', 'security.insecure'],
      logLevel: 'info',
      addr: ['tcp://0.0.0.0:1234'],
      debugAddr: '0.0.0.0:6060',
      tls: { cert: '/etc/buildkit/tls.crt', key: '/etc/buildkit/tls.key', ca: '/etc/buildkit/tlsca.crt' },
      history: { maxAge: 172800, maxEntries: 50 },
      snapshotter: 'auto',
      rootless: false,
      maxParallelism: 4,
      cniPoolSize: 16,
      gc: {
        enabled: true,
        keepStorage: 9000,
        policy: [
          { keepBytes: 512000000, keepDuration: 172800, filters: ['type==source.local', 'type==exec.cachemount', 'type==source.git.checkout'] },
          { all: true, keepBytes: 1024000000 },
        ],
      },
      registry: {
        'docker.io': {
          mirrors: ['yourmirror.local:5000', 'core.harbor.domain/proxy.docker.io'],
          http: true,
          insecure: true,
          ca: ['/etc/config/myca.pem'],
          keypair: [{ key: '/etc/config/key.pem', cert: '/etc/config/cert.pem' }],
        },
        'yourmirror.local:5000': { http: true },
      },
    });
  });

  it('loads examples/buildd.toml', async () => {
    const file = path.join(REPO, 'examples', 'buildd.toml');
    const config = parseConfigText(await fsp.readFile(file, 'utf8'), file);
    expect(config).toMatchObject({ root: '/var/lib/buildd', addr: ['tcp://0.0.0.0:1234', 'unix:///run/buildd/buildd.sock'], maxParallelism: 8 });
    expect(config.gc?.policy).toHaveLength(2);
  });

  it('docs/config.md describes every key of buildd.toml', async () => {
    const doc = await fsp.readFile(path.join(REPO, 'docs', 'config.md'), 'utf8');
    const missing: string[] = [];
    const seen: string[] = [];
    // a key in backticks, or a table named in a [header] of the page
    const described = (key: string): boolean => doc.includes(`\`${key}\``) || new RegExp(`\\[[^\\]\\s]*${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`).test(doc);
    const walk = (at: KeyPath): void => {
      for (const key of objectKeysAt(tomlConfigSchema, at) ?? []) {
        seen.push([...at, key].join('.'));
        if (!described(key)) missing.push([...at, key].join('.'));
        walk([...at, key]);
      }
      // the table of any registry host, of any gc rule or key pair
      for (const any of ['any-host', 0]) if (objectKeysAt(tomlConfigSchema, [...at, any]) !== undefined) walk([...at, any]);
    };
    walk([]);
    expect(seen).toEqual(expect.arrayContaining(['grpc.tls.ca', 'worker.oci.gcpolicy.0.keepBytes', 'registry.any-host.keypair.0.cert', 'worker.oci.stepLimits.cpus']));
    expect(missing).toEqual([]);
  });
});
