import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the proxy does to one request: pass it, or break its connection partway. */
export type Fault =
  | { kind: 'pass' }
  /** answers this status (with a Distribution error body) at once, reading nothing of the request */
  | { kind: 'refuse'; status: number }
  /** takes this many bytes of the request body, then drops the connection */
  | { kind: 'drop-request'; afterBytes: number }
  /** forwards the request, sends this many bytes of the answer's body, then drops the connection */
  | { kind: 'drop-response'; afterBytes: number }
  /** forwards the request, sends this many bytes of the answer's body, then holds the connection open (counted in `stalls`) */
  | { kind: 'stall-response'; afterBytes: number }
  /** takes this many bytes of the request body, then holds the connection without answering (counted in `stalls`) */
  | { kind: 'stall-request'; afterBytes: number };

/**
 * A fault-injecting HTTP proxy in front of a real registry on loopback: `decide` picks, per
 * request (method and path), whether to pass it or break it partway, as a flaky network or a
 * registry restart would. Location headers are rewritten so that clients stay on the proxy.
 * Lifecycle: `startFaultProxy` listens on a free loopback port; `close` stops it and cuts its
 * connections.
 */
export interface FaultProxy {
  /** `127.0.0.1:PORT` */
  host: string;
  /** `METHOD path` of every request seen, in order (the query left out) */
  seen: string[];
  /** `METHOD path?query` of every request seen, in order */
  seenWithQuery: string[];
  /** how many requests reached their stall point */
  stalls(): number;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string, decide: (method: string, path: string) => Fault): Promise<FaultProxy> {
  const [upHost, upPort] = upstream.split(':') as [string, string];
  const seen: string[] = [];
  const seenWithQuery: string[] = [];
  let stalls = 0;
  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    seen.push(`${method} ${path.split('?')[0]}`);
    seenWithQuery.push(`${method} ${path}`);
    const fault = decide(method, path);
    if (fault.kind === 'refuse') {
      res.writeHead(fault.status, { 'content-type': 'application/json', connection: 'close' });
      res.end('{"errors":[{"code":"UNSUPPORTED","message":"refused by the test proxy"}]}');
      return;
    }
    if (fault.kind === 'stall-request') {
      let got = 0;
      let stalled = false;
      req.on('data', (chunk: Buffer) => {
        got += chunk.length;
        if (!stalled && got >= fault.afterBytes) {
          stalled = true;
          stalls++;
          req.pause();
        }
      });
      return;
    }
    if (fault.kind === 'drop-request') {
      let got = 0;
      req.on('data', (chunk: Buffer) => {
        got += chunk.length;
        if (got >= fault.afterBytes) req.socket.destroy();
      });
      req.on('end', () => req.socket.destroy());
      return;
    }
    const up = http.request({ host: upHost, port: Number(upPort), method, path, headers: req.headers }, (upRes) => {
      const headers = { ...upRes.headers };
      const self = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      if (typeof headers.location === 'string') headers.location = headers.location.replace(`//${upstream}`, `//${self}`);
      res.writeHead(upRes.statusCode ?? 502, headers);
      if (fault.kind === 'drop-response') {
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= fault.afterBytes) return;
          res.write(chunk.subarray(0, fault.afterBytes - sent));
          sent += chunk.length;
          if (sent >= fault.afterBytes) res.socket?.destroy();
        });
        upRes.on('end', () => res.socket?.destroy());
        return;
      }
      if (fault.kind === 'stall-response') {
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= fault.afterBytes) return;
          res.write(chunk.subarray(0, fault.afterBytes - sent));
          sent += chunk.length;
          if (sent >= fault.afterBytes) {
            stalls++;
            upRes.pause();
          }
        });
        // a body shorter than afterBytes passes whole
        upRes.on('end', () => {
          if (sent < fault.afterBytes) res.end();
        });
        return;
      }
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    seenWithQuery,
    stalls: () => stalls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
