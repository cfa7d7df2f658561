import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BuildError } from '../solver/build-error';
import { parseAddress, type Address } from './api/address';
import type { DaemonConfig } from './config';
import { parseHostPort } from './ops/debug-server';

/**
 * Binds `server` to one configured address and returns the address actually served (a tcp
 * port 0 becomes the chosen port). tcp uses mutual TLS when `tls` is given and is refused
 * without it unless `insecureTcp` (or `plain`, for the health-only server); unix sockets rely on
 * file permissions (0660), as in BuildKit.
 */
export async function listen(
  server: grpc.Server,
  text: string,
  opts: { tls: grpc.ServerCredentials | undefined; config: DaemonConfig; logger: Logger; plain?: boolean },
): Promise<Address> {
  const addr = parseAddress(text);
  if (addr.kind === 'tcp') {
    // `plain`: a server that exposes nothing but health, which probes (kubelet's) reach without a certificate
    let creds = opts.plain ? grpc.ServerCredentials.createInsecure() : opts.tls;
    if (!creds) {
      if (!opts.config.insecureTcp) {
        throw tcpWithoutTls(text);
      }
      opts.logger.warn({ addr: text }, `buildd serves ${text} without TLS: anyone who reaches it can run builds`);
      creds = grpc.ServerCredentials.createInsecure();
    }
    const port = await bind(server, `${addr.host}:${addr.port}`, creds, text);
    return { ...addr, port, text: `tcp://${addr.host}:${port}` };
  }
  await prepareSocketPath(addr.path, text);
  await bind(server, `unix://${addr.path}`, grpc.ServerCredentials.createInsecure(), text);
  await fsp.chmod(addr.path, 0o660);
  return addr;
}

/**
 * Checks every address and the tcp policy before anything is built or bound, so a refused
 * configuration fails fast with the same message `listen` would give.
 */
export function checkAddresses(config: DaemonConfig): void {
  const tls = Boolean(config.tls.ca && config.tls.cert && config.tls.key);
  for (const text of config.addr) {
    const addr = parseAddress(text);
    if (addr.kind === 'tcp' && !tls && !config.insecureTcp) throw tcpWithoutTls(text);
  }
  if (config.healthAddr !== undefined) parseAddress(config.healthAddr);
  if (config.debugAddr !== undefined) parseHostPort(config.debugAddr);
}

function tcpWithoutTls(text: string): BuildError {
  return new BuildError(
    'invalid-argument',
    `Cannot listen on ${text}: tcp without TLS is refused; give --tlscacert, --tlscert and --tlskey, or --insecure-tcp`,
  );
}

function bind(server: grpc.Server, target: string, creds: grpc.ServerCredentials, text: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(target, creds, (err, port) => {
      if (err) reject(new BuildError('unavailable', `Cannot listen on ${text}: ${err.message}`));
      else resolve(port);
    });
  });
}

/** Creates the parent dir and removes a stale socket, but never one a live daemon still serves. */
async function prepareSocketPath(p: string, text: string): Promise<void> {
  await fsp.mkdir(path.dirname(p), { recursive: true, mode: 0o755 });
  const st = await fsp.lstat(p).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new BuildError('failed-precondition', `Cannot listen on ${text}: ${p} exists and is not a socket`);
  if (await isServed(p)) throw new BuildError('failed-precondition', `Cannot listen on ${text}: another process serves ${p}`);
  await fsp.unlink(p);
}

function isServed(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(p);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}
