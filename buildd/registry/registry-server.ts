import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { BuildError } from '../../solver/build-error';
import { DistributionError, sendDistributionError } from './distribution-error';
import type { HtpasswdAuth } from './htpasswd-auth';
import { RegistryHandlers } from './registry-handlers';
import type { EmbeddedRegistry } from './embedded-registry';
import { routeOf } from './repository-names';
import { UploadSessions } from './upload-sessions';

/** A connection on which nothing moves for this long is closed (a stalled upload included). */
const SOCKET_IDLE_MS = 2 * 60 * 1000;

/** How long an upload nobody touches is kept (distribution's purge age is days; a build's push is minutes). */
export const UPLOAD_IDLE_MS = 15 * 60 * 1000;

export interface RegistryServerOptions {
  /** `HOST:PORT` to listen on (port 0: any free one) */
  addr: string;
  /** the repositories and the content store it serves; its `address` is set once bound */
  registry: EmbeddedRegistry;
  logger: Logger;
  /** abandoned uploads are removed after this long (default UPLOAD_IDLE_MS) */
  uploadIdleMs?: number;
  /** HTTPS with this certificate and key (PEM files); plain HTTP without */
  tls?: { cert: string; key: string };
  /** Basic authentication; `anonymousPull` lets GET and HEAD through without credentials */
  auth?: { htpasswd: HtpasswdAuth; anonymousPull: boolean };
}

/**
 * The embedded OCI registry: the Distribution API over plain HTTP, served from the daemon's
 * content store, so what buildd builds or pulls is never copied to be published.
 *
 * Lifecycle: `startRegistryServer` binds (or fails, leaving nothing); `stop()` stops taking
 * requests, cuts idle connections, ends the uploads in progress, and is idempotent.
 */
export interface RegistryServer {
  /** `host:port` actually bound */
  address: string;
  stop(): Promise<void>;
}

export async function startRegistryServer(opts: RegistryServerOptions): Promise<RegistryServer> {
  const { host, port } = parseListenAddress(opts.addr, opts.tls !== undefined && opts.auth !== undefined);
  const tls = opts.tls ? await readKeyPair(opts.tls) : undefined;
  const { registry } = opts;
  const uploads = await UploadSessions.open(path.join(registry.dir, 'uploads'), registry.content);
  const handlers = new RegistryHandlers(registry.content, registry.repos, uploads);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    serve(req, res).catch((err: unknown) => {
      // serve answers every failure itself; this only keeps a bug from ending the daemon
      opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'registry: request handling failed');
      res.destroy();
    });
  };
  const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
  // distribution's clients keep connections open between requests
  server.keepAliveTimeout = 30_000;
  // A layer upload may take longer than Node's default 5 minutes for a whole request; a client
  // that stops sending is cut by the socket's inactivity timeout instead.
  server.requestTimeout = 0;
  server.timeout = SOCKET_IDLE_MS;

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort(new Error('the client went away'));
    };
    res.on('close', onClose);
    res.setHeader('docker-distribution-api-version', 'registry/2.0');
    // routed as sent: URL would resolve `..` segments into another repository's path
    const rawPath = (req.url ?? '/').split('?')[0] as string;
    try {
      // only the query is taken from it; a request line URL cannot parse is refused, not thrown
      const url = new URL(`http://registry${rawPath.startsWith('/') ? '' : '/'}${(req.url ?? '/').slice(rawPath.length)}`);
      const route = routeOf(rawPath);
      if (!route) throw new DistributionError(404, 'NAME_UNKNOWN', `no such endpoint ${rawPath.slice(0, 200)}`);
      if (opts.auth && !(await allowed(opts.auth, req, route.kind === 'base'))) {
        res.setHeader('www-authenticate', 'Basic realm="buildd registry"');
        throw new DistributionError(401, 'UNAUTHORIZED', 'authentication required');
      }
      await handlers.handle({ req, res, url, route, signal: abort.signal });
    } catch (err) {
      fail(req, res, err);
    } finally {
      res.off('close', onClose);
      opts.logger.debug({ method: req.method, path: rawPath.slice(0, 300), status: res.statusCode }, 'registry request');
    }
  }

  function fail(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
    // the client went away: nobody to answer
    if (res.destroyed) return;
    const refusal = err instanceof DistributionError ? err : undefined;
    if (!refusal) opts.logger.error({ err: err instanceof Error ? err.message : String(err), method: req.method, url: req.url }, 'registry: request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // a body left unread would be taken for the next request on this connection
    if (!req.complete) res.setHeader('connection', 'close');
    sendDistributionError(res, refusal ?? new DistributionError(500, 'UNSUPPORTED', 'internal error'), req.method === 'HEAD');
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch(async (err: NodeJS.ErrnoException) => {
    await uploads.close();
    throw new BuildError('invalid-argument', `Cannot serve the registry on ${opts.addr}: ${err.code ?? err.message}`);
  });
  const sweep = setInterval(() => {
    uploads.sweep(opts.uploadIdleMs ?? UPLOAD_IDLE_MS).then(
      (n) => n > 0 && opts.logger.info({ uploads: n }, 'registry: removed abandoned uploads'),
      (err: unknown) => opts.logger.warn({ err: String(err) }, 'registry: cannot remove abandoned uploads'),
    );
  }, Math.min(60_000, opts.uploadIdleMs ?? UPLOAD_IDLE_MS));
  sweep.unref();
  const bound = server.address() as AddressInfo;
  const address = `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  registry.address = address;
  let stopping: Promise<void> | undefined;
  return {
    address,
    stop: () => {
      stopping ??= (async () => {
        registry.address = undefined;
        clearInterval(sweep);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // requests still running get a moment, then their connections are cut
        const cut = setTimeout(() => server.closeAllConnections(), 5_000);
        await closed;
        clearTimeout(cut);
        await uploads.close();
      })();
      return stopping;
    },
  };
}

/**
 * Whether a request may go on: valid credentials always; none at all only for a pull (GET or
 * HEAD, not the base endpoint, whose 401 tells clients that credentials are taken) when
 * anonymous pull is on. Wrong credentials are never let through, not even to pull.
 */
async function allowed(auth: NonNullable<RegistryServerOptions['auth']>, req: http.IncomingMessage, base: boolean): Promise<boolean> {
  const given = req.headers.authorization?.trim();
  // containers/image answers a Basic challenge it has no credentials for with an empty pair
  const anonymous = given === undefined || /^Basic(\s+Og==)?$/i.test(given);
  if (!anonymous) return (await auth.htpasswd.check(given)) !== undefined;
  return auth.anonymousPull && !base && (req.method === 'GET' || req.method === 'HEAD');
}

async function readKeyPair(files: { cert: string; key: string }): Promise<{ cert: Buffer; key: Buffer }> {
  const read = async (file: string): Promise<Buffer> =>
    fsp.readFile(file).catch((err: NodeJS.ErrnoException) => {
      throw new BuildError('invalid-argument', `Cannot serve the registry with TLS: cannot read ${file}: ${err.code ?? err.message}`);
    });
  return { cert: await read(files.cert), key: await read(files.key) };
}

/**
 * Where the registry may listen: anywhere with TLS and authentication; without them a loopback
 * address only (127.0.0.0/8, ::1, localhost), where only this machine reaches it.
 */
export function parseListenAddress(addr: string, secured = false): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new BuildError('invalid-argument', `Cannot serve the registry on ${JSON.stringify(addr)}: expected HOST:PORT`);
  const host = (m[1] ?? m[2]) as string;
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback && !secured) {
    throw new BuildError('invalid-argument', `Cannot serve the registry on ${addr}: without TLS and authentication it listens on a loopback address only (127.0.0.1, ::1, localhost); give it a certificate and an htpasswd file`);
  }
  return { host, port };
}
