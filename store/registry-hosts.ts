import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import { buildConnector } from 'undici';
import { BuildError } from '../solver/build-error';
import { DOCKER_HUB } from './image-ref';
import { readSmallFile } from './small-file';

/**
 * How to speak to one registry host: `registry.<host>` of the daemon config, with BuildKit's
 * meaning of `[registry."host"]` in buildkitd.toml.
 */
export interface RegistryHostConfig {
  /** true: plain HTTP; false: HTTPS even on loopback; unset: plain HTTP on loopback only. */
  http?: boolean;
  /**
   * HTTPS without verifying the certificate, and plain HTTP where the host does not speak TLS
   * (unless `http` is false). What was learned about a host is kept for the transport's life.
   */
  insecure?: boolean;
  /** PEM files of CAs trusted for this host, on top of Node's default roots. */
  ca?: readonly string[];
  /**
   * Registries (host[:port]) asked first for this one's images, in order, as BuildKit's
   * `mirrors`: the same repository path on each; the host itself when none has it.
   */
  mirrors?: readonly string[];
  /**
   * Client certificates (PEM files) for registries that ask for one (mutual TLS), as BuildKit's
   * `keypair`; the first pair is presented.
   */
  keypair?: ReadonlyArray<{ cert: string; key: string }>;
}

/** The API endpoint of a registry: Docker Hub's name is not its API host. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}

/**
 * The one name a registry host's settings are kept and looked up under, for keys of
 * `registry.<host>`, registry names of images and origins undici connects to alike.
 * `reg:443` and `reg` are the same registry for HTTPS, as in Docker, and undici names the
 * origin `https://reg:443` just `reg`: both become `reg`. Any other port names another
 * registry (`reg:5000`); a setting of `reg` also applies when plain HTTP is spoken to `reg:443`,
 * while the port a request goes to is always the one of the image name. Host names are
 * case-insensitive; Docker Hub's settings are its API host's.
 */
export function hostKey(host: string): string {
  const lower = host.toLowerCase();
  return apiHost(lower.endsWith(':443') ? lower.slice(0, -':443'.length) : lower);
}

const LOOPBACK_RE = /^(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?$/;

/** Node's codes for a certificate that did not verify (chain, dates, or names). */
const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE', 'CERT_REVOKED', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA',
  'INVALID_PURPOSE', 'CERT_CHAIN_TOO_LONG', 'PATH_LENGTH_EXCEEDED', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_TLS_CERT_ALTNAME_FORMAT', 'HOSTNAME_MISMATCH',
]);

/** Why a connection's certificate was refused, or undefined when `err` is not that. */
export function untrustedCertificate(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !UNTRUSTED_CODES.has(code)) return undefined;
  return `${(err as Error).message}, ${code}`;
}

/**
 * Whether a failed HTTPS connection means the host does not speak TLS there, so plain HTTP is
 * worth a try (BuildKit's httpFallback): it answered the handshake with something not TLS, or,
 * when no port was given, nothing listens on 443 (then 80 is tried).
 */
export function httpsNotSpoken(err: unknown, registry: string): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || code === 'ERR_SSL_HTTP_REQUEST') return true;
  const hasPort = /:\d+$/.test(apiHost(registry));
  return !hasPort && (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT');
}

/** Largest CA file read: a bundle of a few hundred certificates fits. */
const MAX_CA_BYTES = 1024 * 1024;

/**
 * Reads a PEM file of CA certificates, refusing one without a parseable certificate so that a
 * wrong path is found when the daemon starts rather than at the first pull.
 */
export async function loadCaFile(file: string): Promise<string> {
  const text = await readSmallFile(file, MAX_CA_BYTES, 'read CA file');
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
  try {
    if (!first) throw new Error('no PEM certificate in it');
    new X509Certificate(first[0]);
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot read CA file ${file}: ${(err as Error).message}`);
  }
  return text;
}

/**
 * The per-host connection policy of a RegistryTransport: which scheme to use, when to fall
 * back to plain HTTP, and an undici connector that applies each host's TLS settings (its CAs,
 * or no verification) to connections to that host only. Token servers and redirect targets are
 * other hosts: they get their own settings, or the defaults.
 *
 * Lifecycle: one per RegistryTransport; holds the CAs it loaded (on the first connection to
 * their host) and the hosts it learned speak only HTTP; holds no sockets, nothing to close.
 */
export class RegistryHosts {
  /** By hostKey: the merged settings, and the key as configured (for messages). */
  private readonly hosts = new Map<string, { config: RegistryHostConfig; name: string }>();
  private readonly connectors = new Map<string, Promise<buildConnector.connector>>();
  private readonly plainHttp = new Set<string>();
  private readonly defaultConnector: buildConnector.connector;

  /**
   * Keys that name the same host (`reg` and `reg:443`, see hostKey) are merged in the order
   * given: a later key's setting wins, and the CAs of both are trusted.
   */
  constructor(
    hosts: Readonly<Record<string, RegistryHostConfig>> | Iterable<readonly [string, RegistryHostConfig]>,
    private readonly connectOptions: buildConnector.BuildOptions = {},
  ) {
    const entries = Symbol.iterator in hosts ? hosts : Object.entries(hosts);
    for (const [host, config] of entries) {
      const key = hostKey(host);
      const before = this.hosts.get(key);
      if (!before) {
        this.hosts.set(key, { config, name: host });
        continue;
      }
      const ca = [...(before.config.ca ?? []), ...(config.ca ?? [])];
      this.hosts.set(key, { config: { ...before.config, ...config, ...(ca.length > 0 ? { ca } : {}) }, name: before.name });
    }
    this.defaultConnector = buildConnector(connectOptions);
  }

  /** `http` or `https` for the next request to `registry`. */
  scheme(registry: string): 'http' | 'https' {
    const config = this.config(registry);
    if (config.insecure) return this.plainHttp.has(hostKey(registry)) ? 'http' : 'https';
    if (config.http !== undefined) return config.http ? 'http' : 'https';
    return LOOPBACK_RE.test(registry) ? 'http' : 'https';
  }

  /** Whether a failed HTTPS request to `registry` may be tried again over plain HTTP. */
  mayFallBack(registry: string): boolean {
    const config = this.config(registry);
    return config.insecure === true && config.http !== false;
  }

  /** Remembers that `registry` speaks plain HTTP, so HTTPS is not tried again. */
  learnPlainHttp(registry: string): void {
    this.plainHttp.add(hostKey(registry));
  }

  /** An undici `connect` option: each connection gets its host's TLS settings. */
  readonly connect: buildConnector.connector = (options, callback) => {
    const origin = options.host ?? options.hostname;
    this.connectorFor(origin).then(
      (connector) => connector(options, callback),
      (err: Error) => callback(err, null),
    );
  };

  private config(registry: string): RegistryHostConfig {
    return this.hosts.get(hostKey(registry))?.config ?? {};
  }

  /** `origin` is undici's `host`: `https://reg:443` comes as `reg`, hence hostKey. */
  private connectorFor(origin: string): Promise<buildConnector.connector> {
    const key = hostKey(origin);
    const host = this.hosts.get(key);
    if (!host || (!host.config.insecure && !host.config.ca?.length && !host.config.keypair?.length)) return Promise.resolve(this.defaultConnector);
    let connector = this.connectors.get(key);
    if (!connector) {
      connector = this.buildFor(host.name, host.config);
      // A CA file fixed on disk is read again at the next connection.
      connector.catch(() => this.connectors.delete(key));
      this.connectors.set(key, connector);
    }
    return connector;
  }

  /** `name`: the key as configured, so that an error names the setting to fix. */
  private async buildFor(name: string, config: RegistryHostConfig): Promise<buildConnector.connector> {
    const pair = config.keypair?.[0];
    let client: { cert: string; key: string } | undefined;
    if (pair) {
      try {
        client = { cert: await readSmallFile(pair.cert, MAX_CA_BYTES, 'read client certificate'), key: await readSmallFile(pair.key, MAX_CA_BYTES, 'read client key') };
      } catch (err) {
        throw new BuildError('failed-precondition', `Cannot connect to registry ${name}: registry.${JSON.stringify(name)}.keypair: ${(err as Error).message}`);
      }
    }
    if (config.insecure) return buildConnector({ ...this.connectOptions, ...client, rejectUnauthorized: false });
    const extra: string[] = [];
    for (const file of config.ca ?? []) {
      try {
        extra.push(await loadCaFile(file));
      } catch (err) {
        throw new BuildError('failed-precondition', `Cannot connect to registry ${name}: registry.${JSON.stringify(name)}.ca: ${(err as Error).message}`);
      }
    }
    // Node's `ca` replaces the default roots: keep them, as BuildKit adds to the system pool.
    return buildConnector({ ...this.connectOptions, ...client, ca: [...tls.rootCertificates, ...extra] });
  }
}
