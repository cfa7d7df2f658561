/**
 * One key of buildd.toml and the key of the JSON config (DaemonConfigFile) it sets. A pair
 * carries everything below it: `grpc.tls` is the JSON `tls` with its keys `ca`, `cert`, `key`
 * unchanged. Constant data, read by the TOML schema, the loader and the converter alike, so that
 * the three cannot disagree on where a key goes.
 */
export interface TomlKey {
  readonly toml: readonly string[];
  readonly json: readonly string[];
}

/**
 * Every key of buildd.toml. BuildKit's name (buildkitd.toml) wherever a key means what it means
 * in BuildKit; buildd's own keys in the camelCase of BuildKit's newer keys (docs/config.md).
 * The test of this table checks that every JSON key is reachable.
 */
export const TOML_KEYS: readonly TomlKey[] = [
  { toml: ['root'], json: ['root'] },
  { toml: ['debug'], json: ['debug'] },
  { toml: ['insecure-entitlements'], json: ['insecureEntitlements'] },
  { toml: ['shutdownGrace'], json: ['shutdownGrace'] },
  { toml: ['maxLayerBytes'], json: ['maxLayerBytes'] },
  { toml: ['log', 'level'], json: ['logLevel'] },
  { toml: ['grpc', 'address'], json: ['addr'] },
  { toml: ['grpc', 'insecureTcp'], json: ['insecureTcp'] },
  { toml: ['grpc', 'debugAddress'], json: ['debugAddr'] },
  { toml: ['grpc', 'healthAddress'], json: ['healthAddr'] },
  { toml: ['grpc', 'tls'], json: ['tls'] },
  { toml: ['worker', 'oci', 'rootless'], json: ['rootless'] },
  { toml: ['worker', 'oci', 'snapshotter'], json: ['snapshotter'] },
  { toml: ['worker', 'oci', 'noProcessSandbox'], json: ['noProcessSandbox'] },
  { toml: ['worker', 'oci', 'max-parallelism'], json: ['maxParallelism'] },
  { toml: ['worker', 'oci', 'cniConfigPath'], json: ['cniConfigPath'] },
  { toml: ['worker', 'oci', 'cniBinaryPath'], json: ['cniBinaryDir'] },
  { toml: ['worker', 'oci', 'cniPoolSize'], json: ['cniPoolSize'] },
  { toml: ['worker', 'oci', 'defaultCgroupParent'], json: ['cgroupParent'] },
  { toml: ['worker', 'oci', 'stepLimits'], json: ['stepLimits'] },
  { toml: ['worker', 'oci', 'gc'], json: ['gc', 'enabled'] },
  { toml: ['worker', 'oci', 'gckeepstorage'], json: ['gc', 'keepStorage'] },
  { toml: ['worker', 'oci', 'gcinterval'], json: ['gc', 'interval'] },
  { toml: ['worker', 'oci', 'gcpolicy'], json: ['gc', 'policy'] },
  { toml: ['registry'], json: ['registry'] },
  { toml: ['registryServer', 'address'], json: ['registryAddr'] },
  { toml: ['registryServer', 'tls'], json: ['registryTls'] },
  { toml: ['registryServer', 'tlsCert'], json: ['registryTlsCert'] },
  { toml: ['registryServer', 'tlsKey'], json: ['registryTlsKey'] },
  { toml: ['registryServer', 'htpasswd'], json: ['registryHtpasswd'] },
  { toml: ['registryServer', 'anonymousPull'], json: ['registryAnonymousPull'] },
  { toml: ['keptLocals'], json: ['keptLocals'] },
  { toml: ['history'], json: ['history'] },
  { toml: ['otel'], json: ['otel'] },
];

/**
 * keys of buildkitd.toml that buildd does not have, so that an operator who brings a BuildKit
 * file hears that rather than a suggestion of some other key; `*` is any registry host, `[]`
 * any index
 */
export const BUILDKIT_ONLY_KEYS: ReadonlySet<string> = new Set([
  'trace', 'proxyNetwork', 'provenanceEnvDir', 'dns', 'cdi', 'frontend', 'system', 'cache',
  'log.format',
  'grpc.uid', 'grpc.gid', 'grpc.securityDescriptor',
  'otel.socketPath',
  'worker.containerd',
  'worker.oci.enabled', 'worker.oci.labels', 'worker.oci.platforms',
  'worker.oci.binary', 'worker.oci.apparmor-profile', 'worker.oci.selinux', 'worker.oci.proxySnapshotterPath',
  'worker.oci.stargzSnapshotter', 'worker.oci.userRemapUnsupported', 'worker.oci.networkMode',
  'worker.oci.bridgeName', 'worker.oci.bridgeSubnet',
  'worker.oci.reservedSpace', 'worker.oci.maxUsedSpace', 'worker.oci.minFreeSpace',
  'worker.oci.gcpolicy[].reservedSpace', 'worker.oci.gcpolicy[].maxUsedSpace', 'worker.oci.gcpolicy[].minFreeSpace',
  'registry.*.tlsconfigdir',
]);
