import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { EtcFiles } from './oci-spec';

const MAX_RESOLV_CONF_BYTES = 64 * 1024;
/** Docker's resolvers for a container when the host names none it could reach (libnetwork's defaultIPv4Dns). */
export const FALLBACK_NAMESERVERS = ['8.8.8.8', '8.8.4.4'];
/**
 * Where systemd-resolved lists the upstream servers behind its 127.0.0.53 stub: what Docker
 * and BuildKit read when the host's resolv.conf names only the stub.
 */
export const SYSTEMD_RESOLVED_CONF = '/run/systemd/resolve/resolv.conf';

/**
 * Writes hosts, resolv.conf and hostname into `bundleDir` for the container to bind-mount
 * read-only. They live and die with the bundle.
 */
export async function writeEtcFiles(
  bundleDir: string,
  hostname: string,
  hostResolvConf: string,
  resolvedConf = SYSTEMD_RESOLVED_CONF,
  opts: { hostNetwork?: boolean } = {},
): Promise<EtcFiles> {
  const files: EtcFiles = {
    hosts: path.join(bundleDir, 'hosts'),
    resolvConf: path.join(bundleDir, 'resolv.conf'),
    hostname: path.join(bundleDir, 'hostname'),
  };
  // the own hostname on the loopback line, as BuildKit does, so that tools resolving it work offline
  const hosts = `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  await fsp.writeFile(files.hosts, hosts, { mode: 0o644 });
  const hostText = await readHostResolvConf(hostResolvConf);
  // host network, as BuildKit: the host's file as it is when it names a server, loopback ones
  // included (127.0.0.53 is reachable from the daemon's own namespace)
  if (opts.hostNetwork && /^\s*nameserver\s/m.test(hostText)) {
    await fsp.writeFile(files.resolvConf, hostText, { mode: 0o644 });
    await fsp.writeFile(files.hostname, `${hostname}\n`, { mode: 0o644 });
    return files;
  }
  let resolv = containerResolvConf(hostText);
  // only loopback resolvers on the host (systemd-resolved's stub): use the servers behind it
  if (!/^nameserver /m.test(resolv)) {
    const upstream = containerResolvConf(await readHostResolvConf(resolvedConf));
    if (/^nameserver /m.test(upstream)) resolv = upstream;
  }
  // none remains: Docker's fallback servers, so that a RUN can resolve names at all
  if (!/^nameserver /m.test(resolv)) resolv = FALLBACK_NAMESERVERS.map((ns) => `nameserver ${ns}\n`).join('') + resolv;
  await fsp.writeFile(files.resolvConf, resolv, { mode: 0o644 });
  await fsp.writeFile(files.hostname, `${hostname}\n`, { mode: 0o644 });
  return files;
}

/**
 * The container's resolv.conf, derived from the host's like BuildKit and Docker do: keep
 * `nameserver`, `search` and `options`, but drop loopback nameservers, because in the
 * container's own network namespace 127.0.0.53 (systemd-resolved) is the container itself.
 * A RUN on the CNI bridge reaches them through the bridge's masquerade; with `--network=none`
 * nothing is reachable, but programs expect the file to exist. (writeEtcFiles adds Docker's
 * fallback servers when no server remains.)
 */
export function containerResolvConf(host: string): string {
  const out: string[] = [];
  for (const raw of host.split('\n')) {
    const line = raw.trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver') {
      const addr = rest[0];
      if (addr === undefined || isLoopback(addr)) continue;
      out.push(`nameserver ${addr}`);
    } else if ((key === 'search' || key === 'options') && rest.length > 0) {
      out.push(`${key} ${rest.join(' ')}`);
    }
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

function isLoopback(addr: string): boolean {
  return addr.startsWith('127.') || addr === '::1';
}

async function readHostResolvConf(file: string): Promise<string> {
  try {
    const fh = await fsp.open(file, 'r');
    try {
      // capped: the host file is trusted, but a daemon reads nothing unbounded
      const buf = Buffer.alloc(MAX_RESOLV_CONF_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
