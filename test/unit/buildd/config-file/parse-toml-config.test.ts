import { parseTomlConfig } from '../../../../buildd/config-file/parse-toml-config';

const load = (text: string): ReturnType<typeof parseTomlConfig> => parseTomlConfig(text, '/etc/buildd/buildd.toml');
const failure = (text: string): string => {
  try {
    load(text);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the config loaded');
};

describe('buildd.toml', () => {
  it('maps the global keys and [log]', () => {
    expect(
      load(`
        root = "/srv/buildd"
        debug = true
        insecure-entitlements = ["network.host", "security.insecure"]
        shutdownGrace = "5m"
        maxLayerBytes = 68719476736
        [log]
        level = "warn"
      `),
    ).toEqual({
      root: '/srv/buildd',
      debug: true,
      insecureEntitlements: ['network.host', 'security.insecure'],
      shutdownGrace: '5m',
      maxLayerBytes: 68719476736,
      logLevel: 'warn',
    });
  });

  it('maps [grpc] and [grpc.tls]', () => {
    expect(
      load(`
        [grpc]
        address = ["tcp://0.0.0.0:1234", "unix:///run/buildd/buildd.sock"]
        insecureTcp = true
        debugAddress = "127.0.0.1:6060"
        healthAddress = "tcp://0.0.0.0:8081"
        [grpc.tls]
        cert = "/etc/buildd/tls.crt"
        key = "/etc/buildd/tls.key"
        ca = "/etc/buildd/tlsca.crt"
      `),
    ).toEqual({
      addr: ['tcp://0.0.0.0:1234', 'unix:///run/buildd/buildd.sock'],
      insecureTcp: true,
      debugAddr: '127.0.0.1:6060',
      healthAddr: 'tcp://0.0.0.0:8081',
      tls: { cert: '/etc/buildd/tls.crt', key: '/etc/buildd/tls.key', ca: '/etc/buildd/tlsca.crt' },
    });
  });

  it('maps [worker.oci] with its gc keys, [[worker.oci.gcpolicy]] and [worker.oci.stepLimits]', () => {
    expect(
      load(`
        [worker.oci]
        rootless = true
        snapshotter = "native"
        max-parallelism = 4
        cniConfigPath = "/etc/buildd/cni.conflist"
        cniBinaryPath = "/opt/cni/bin"
        cniPoolSize = 16
        defaultCgroupParent = "/ci/buildd"
        gc = true
        gckeepstorage = "20GB"
        gcinterval = "30s"
        [worker.oci.stepLimits]
        memory = "2g"
        pids = 4096
        cpus = 1.5
        [[worker.oci.gcpolicy]]
        keepBytes = "512MB"
        keepDuration = "48h"
        filters = ["type==source.local", "type==exec.cachemount"]
        [[worker.oci.gcpolicy]]
        all = true
        keepBytes = 1024000000
      `),
    ).toEqual({
      rootless: true,
      snapshotter: 'native',
      maxParallelism: 4,
      cniConfigPath: '/etc/buildd/cni.conflist',
      cniBinaryDir: '/opt/cni/bin',
      cniPoolSize: 16,
      cgroupParent: '/ci/buildd',
      stepLimits: { memoryBytes: 2 * 1024 ** 3, pids: 4096, cpus: 1.5 },
      gc: {
        enabled: true,
        keepStorage: '20GB',
        interval: '30s',
        policy: [
          { keepBytes: '512MB', keepDuration: '48h', filters: ['type==source.local', 'type==exec.cachemount'] },
          { all: true, keepBytes: 1024000000 },
        ],
      },
    });
  });

  it('maps [registry."host"] with mirrors, http, insecure, ca and [[keypair]]', () => {
    expect(
      load(`
        [registry."docker.io"]
        mirrors = ["mirror.local:5000", "core.harbor.domain/proxy.docker.io"]
        insecure = true
        ca = ["/etc/buildd/myca.pem"]
        [[registry."docker.io".keypair]]
        key = "/etc/buildd/key.pem"
        cert = "/etc/buildd/cert.pem"
        [registry."mirror.local:5000"]
        http = true
      `),
    ).toEqual({
      registry: {
        'docker.io': {
          mirrors: ['mirror.local:5000', 'core.harbor.domain/proxy.docker.io'],
          insecure: true,
          ca: ['/etc/buildd/myca.pem'],
          keypair: [{ key: '/etc/buildd/key.pem', cert: '/etc/buildd/cert.pem' }],
        },
        'mirror.local:5000': { http: true },
      },
    });
  });

  it('maps [registryServer], [keptLocals], [history] and [otel]', () => {
    expect(
      load(`
        [registryServer]
        address = "127.0.0.1:5000"
        tls = true
        tlsCert = "/etc/buildd/registry.crt"
        tlsKey = "/etc/buildd/registry.key"
        htpasswd = "/etc/buildd/htpasswd"
        anonymousPull = true
        [keptLocals]
        maxKeys = 64
        maxBytes = 21474836480
        [history]
        maxAge = 172800
        maxEntries = 50
        [otel]
        endpoint = "http://127.0.0.1:4318"
        serviceName = "ci-buildd"
      `),
    ).toEqual({
      registryAddr: '127.0.0.1:5000',
      registryTls: true,
      registryTlsCert: '/etc/buildd/registry.crt',
      registryTlsKey: '/etc/buildd/registry.key',
      registryHtpasswd: '/etc/buildd/htpasswd',
      registryAnonymousPull: true,
      keptLocals: { maxKeys: 64, maxBytes: 21474836480 },
      history: { maxAge: 172800, maxEntries: 50 },
      otel: { endpoint: 'http://127.0.0.1:4318', serviceName: 'ci-buildd' },
    });
  });

  it('takes an empty file, comments and empty tables as nothing set', () => {
    expect(load('')).toEqual({});
    expect(load('# nothing here\n[grpc]\n[worker.oci]\n')).toEqual({});
  });

  it('refuses an unknown key with its dotted path and the closest key of its table', () => {
    expect(failure('rot = "/x"')).toBe('Cannot load config /etc/buildd/buildd.toml: unknown key rot, did you mean "root"?');
    expect(failure('[worker.oci]\nmax-paralelism = 4')).toMatch(/: unknown key worker\.oci\.max-paralelism, did you mean "max-parallelism"\?$/);
    expect(failure('[grpc.tls]\ncerts = "c"')).toMatch(/unknown key grpc\.tls\.certs, did you mean "cert"\?$/);
    expect(failure('[registry."docker.io"]\nmirror = ["m"]')).toMatch(/unknown key registry\."docker\.io"\.mirror, did you mean "mirrors"\?$/);
    expect(failure('[[registry."r:5000".keypair]]\nkey = "k"\ncrt = "c"')).toMatch(/unknown key registry\."r:5000"\.keypair\[0\]\.crt, did you mean "cert"\?$/);
    expect(failure('[[worker.oci.gcpolicy]]\nall = true\n[[worker.oci.gcpolicy]]\nkeepbytes = 1')).toMatch(/unknown key worker\.oci\.gcpolicy\[1\]\.keepbytes, did you mean "keepBytes"\?$/);
    expect(failure('[wroker.oci]\nrootless = true')).toMatch(/unknown key wroker, did you mean "worker"\?$/);
    expect(failure('[history]\nmaxEntires = 5')).toMatch(/unknown key history\.maxEntires, did you mean "maxEntries"\?$/);
  });

  it('names an unknown key without a suggestion when none is close', () => {
    expect(failure('[otel]\nprotocol = "grpc"')).toBe('Cannot load config /etc/buildd/buildd.toml: unknown key otel.protocol');
  });

  it('names every unknown key at once', () => {
    expect(failure('rot = "/x"\n[worker.oci]\nsnapshoter = "native"\nmax-paralelism = 4')).toBe(
      'Cannot load config /etc/buildd/buildd.toml: unknown key worker.oci.snapshoter, did you mean "snapshotter"?; ' +
        'unknown key worker.oci.max-paralelism, did you mean "max-parallelism"?; unknown key rot, did you mean "root"?',
    );
  });

  it('points a JSON config key name at its TOML key', () => {
    expect(failure('[worker.oci]\ncgroupParent = "/x"')).toMatch(/unknown key worker\.oci\.cgroupParent, did you mean "worker\.oci\.defaultCgroupParent" \(the JSON config's "cgroupParent"\)\?$/);
    expect(failure('registryAddr = "127.0.0.1:5000"')).toMatch(/did you mean "registryServer\.address" \(the JSON config's "registryAddr"\)\?$/);
  });

  it('says which buildkitd.toml keys buildd does not have', () => {
    expect(failure('[worker.oci]\nplatforms = ["linux/amd64"]')).toMatch(/worker\.oci\.platforms is a key of buildkitd\.toml that buildd does not have/);
    expect(failure('[worker.containerd]\nenabled = false')).toMatch(/worker\.containerd is a key of buildkitd\.toml/);
    expect(failure('[[worker.oci.gcpolicy]]\nreservedSpace = "1GB"')).toMatch(/worker\.oci\.gcpolicy\[0\]\.reservedSpace is a key of buildkitd\.toml/);
    expect(failure('[registry."docker.io"]\ntlsconfigdir = ["/etc/x"]')).toMatch(/registry\."docker\.io"\.tlsconfigdir is a key of buildkitd\.toml/);
    expect(failure('[log]\nformat = "json"')).toMatch(/log\.format is a key of buildkitd\.toml/);
  });

  it('refuses a value of the wrong type, naming the path and what was expected', () => {
    expect(failure('[worker.oci]\nmax-parallelism = "four"')).toBe(
      'Cannot load config /etc/buildd/buildd.toml: worker.oci.max-parallelism: expected a number, got a string',
    );
    expect(failure('[worker.oci]\nmax-parallelism = 1.5')).toMatch(/worker\.oci\.max-parallelism: expected an integer, got a float$/);
    expect(failure('[grpc]\naddress = "tcp://0.0.0.0:1234"')).toMatch(/grpc\.address: expected an array, got a string$/);
    expect(failure('[grpc]\ntls = true')).toMatch(/grpc\.tls: expected a table, got a boolean$/);
    expect(failure('shutdownGrace = true')).toMatch(/shutdownGrace: expected a number or a string, got a boolean$/);
    expect(failure('[registry."docker.io"]\nmirrors = [5000]')).toMatch(/registry\."docker\.io"\.mirrors\[0\]: expected a string, got a number$/);
    expect(failure('root = 1979-05-27T07:32:00Z')).toMatch(/root: expected a string, got a date-time$/);
  });

  it('refuses values the JSON config refuses, with the same reasons', () => {
    expect(failure('[worker.oci]\nsnapshotter = "zfs"')).toMatch(/worker\.oci\.snapshotter: Invalid enum value\. Expected 'auto' \| 'overlayfs' \| 'native', received 'zfs'$/);
    expect(failure('[worker.oci.stepLimits]\nmemory = "1k"')).toMatch(/worker\.oci\.stepLimits\.memory: expected a size of at least 6m/);
    expect(failure('[worker.oci]\ndefaultCgroupParent = "buildd"')).toMatch(/worker\.oci\.defaultCgroupParent: expected an absolute cgroup path/);
    expect(failure('insecure-entitlements = ["device"]')).toMatch(/insecure-entitlements\[0\]: Invalid enum value/);
    expect(failure('[otel]\nendpoint = "not a url"')).toMatch(/otel\.endpoint: Invalid url/);
  });

  it('names the line and column of a TOML syntax error', () => {
    const message = failure('root = "/x"\n[grpc]\naddress = ["tcp://0.0.0.0:1234",, ]\n');
    expect(message).toMatch(/^Cannot load config \/etc\/buildd\/buildd\.toml: line 3, column 33: invalid value\n/);
    expect(message).toContain('3:  address = ["tcp://0.0.0.0:1234",, ]');
    expect(failure('root = "/x"\nroot = "/y"')).toMatch(/^Cannot load config \/etc\/buildd\/buildd\.toml: line 2, column 1: trying to redefine an already defined table or value/);
    expect(failure('[grpc]\naddress = ["a"]\n[grpc]\n')).toMatch(/line 3, column 2: trying to redefine/);
  });

  it('refuses keys that could reach Object.prototype', () => {
    expect(failure('[registry."__proto__"]\nhttp = true')).toMatch(/^Cannot load config \/etc\/buildd\/buildd\.toml: line 1, column \d+: document contains an unsafe property/);
  });
});
