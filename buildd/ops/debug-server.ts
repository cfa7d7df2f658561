import * as http from 'node:http';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { getHeapSnapshot } from 'node:v8';
import type { Logger } from 'pino';
import { BuildError } from '../../solver/build-error';
import { parseAddress, type Address } from '../api/address';
import type { DaemonMetrics } from './daemon-metrics';

/** A CPU profile is asked for in seconds (as Go's /debug/pprof/profile?seconds=N); these bound it. */
const DEFAULT_PROFILE_SECONDS = 30;
const MAX_PROFILE_SECONDS = 300;

/**
 * `buildd --debugaddr`: HTTP for operators. `/metrics` (Prometheus text format) to anyone who
 * reaches the address, as BuildKit's debug address; `/debug/pprof/profile?seconds=N` (a V8 CPU
 * profile, a `.cpuprofile` that Chrome DevTools and speedscope open) and `/debug/pprof/heap` (a
 * V8 heap snapshot) only to loopback clients: unlike Go's pprof, a heap snapshot holds every
 * string in memory (keys, credentials, secrets in flight), and taking one stops the daemon
 * for a while. On Kubernetes, `kubectl port-forward` reaches them.
 *
 * Lifecycle: `startDebugServer` listens (or fails naming the address); `stop()` closes the
 * listener and every open connection, ending a profile in progress.
 */
export interface DebugServer {
  /** `host:port` served, port resolved */
  address: string;
  stop(): Promise<void>;
}

export async function startDebugServer(addr: string, metrics: DaemonMetrics, logger: Logger): Promise<DebugServer> {
  const { host, port } = parseHostPort(addr);
  let profiling = false;
  let snapshotting = false;
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err: Error) => {
      logger.warn({ err: err.message, url: req.url }, 'debug request failed');
      if (!res.headersSent) reply(res, 500, `${err.message}\n`);
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://debug');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'only GET\n');
    switch (url.pathname) {
      case '/metrics': {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
        return;
      }
      case '/debug/pprof/':
      case '/debug/pprof':
      case '/debug/pprof/profile':
      case '/debug/pprof/heap':
        if (!isLoopback(req.socket.remoteAddress ?? '')) return reply(res, 403, 'profiles are served to loopback clients only (on Kubernetes: kubectl port-forward)\n');
        return pprof(url, req, res);
      default:
        return reply(res, 404, 'not found: /metrics, /debug/pprof/profile?seconds=N, /debug/pprof/heap\n');
    }
  }

  async function pprof(url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    switch (url.pathname) {
      case '/debug/pprof/':
      case '/debug/pprof':
        return reply(res, 200, 'profile?seconds=N  V8 CPU profile (.cpuprofile)\nheap               V8 heap snapshot (.heapsnapshot)\n');
      case '/debug/pprof/profile':
        return profile(url, req, res);
      default: {
        if (snapshotting) return reply(res, 409, 'a heap snapshot is already being taken\n');
        res.writeHead(200, { 'content-type': 'application/json', 'content-disposition': 'attachment; filename="buildd.heapsnapshot"' });
        if (req.method === 'HEAD') return void res.end();
        snapshotting = true;
        try {
          await pipeline(getHeapSnapshot(), res);
        } finally {
          snapshotting = false;
        }
      }
    }
  }

  async function profile(url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const text = url.searchParams.get('seconds') ?? String(DEFAULT_PROFILE_SECONDS);
    const seconds = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || seconds <= 0 || seconds > MAX_PROFILE_SECONDS) {
      return reply(res, 400, `seconds must be a number above 0 and at most ${MAX_PROFILE_SECONDS}\n`);
    }
    if (profiling) return reply(res, 409, 'a CPU profile is already being taken\n');
    profiling = true;
    const session = new Session();
    session.connect();
    try {
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      // the profile ends early when the operator gives up (the connection closes)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, seconds * 1000);
        req.socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const { profile: result } = await session.post('Profiler.stop');
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json', 'content-disposition': 'attachment; filename="buildd.cpuprofile"' });
      res.end(JSON.stringify(result));
    } finally {
      session.disconnect();
      profiling = false;
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new BuildError('unavailable', `Cannot serve --debugaddr ${addr}: ${err.message}`)));
    server.listen(port, host, resolve);
  });
  // after the listen: an accept that fails (EMFILE) is logged, never the daemon's end
  server.on('error', (err) => logger.warn({ err: err.message }, 'debug server error'));
  const bound = server.address() as AddressInfo;
  const address = `${host.includes(':') ? `[${host}]` : host}:${bound.port}`;
  if (!isLoopback(host)) logger.warn({ debugaddr: address }, `the debug server on ${address} has no authentication: anyone who reaches it reads metrics and profiles`);
  return {
    address,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `host:port`, `[v6]:port` (and a `tcp://` prefix, as the gRPC addresses take). */
export function parseHostPort(addr: string): { host: string; port: number } {
  // the gRPC addresses' tcp form, with its scheme optional here
  const bad = (): BuildError => new BuildError('invalid-argument', `Cannot parse --debugaddr ${addr}: expected host:port, e.g. 127.0.0.1:6060`);
  let parsed: Address;
  try {
    parsed = parseAddress(addr.startsWith('tcp://') ? addr : `tcp://${addr}`);
  } catch {
    throw bad();
  }
  if (parsed.kind !== 'tcp') throw bad();
  return { host: parsed.host.replace(/^\[(.*)\]$/, '$1'), port: parsed.port };
}

/** A loopback address or name (IPv4-mapped included): who may take profiles. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^(::ffff:)?127\./.test(host);
}

function reply(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}
