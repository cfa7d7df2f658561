import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The HTTP server RUN steps fetch from, on the gateway address of the test's own bridge
 * (traffic stays between the host and namespaces on that bridge). `/page` answers a token,
 * `/who` answers the caller's address, `/barrier` answers once two callers wait, `/hold` never.
 * Lifecycle: `startGatewayServer` resolves once it listens; `close` ends every connection, held
 * ones too, and resolves once the server is closed.
 */
export interface GatewayServer {
  port: number;
  token: string;
  /** remote addresses of every request, by path */
  seen: Map<string, string[]>;
  close(): Promise<void>;
}

export async function startGatewayServer(address: string): Promise<GatewayServer> {
  const token = `token-${randomBytes(8).toString('hex')}`;
  const seen = new Map<string, string[]>();
  const barrier: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const route = (req.url ?? '/').split('?')[0] as string;
    const from = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    seen.set(route, [...(seen.get(route) ?? []), from]);
    if (route === '/page') res.end(`${token}\n`);
    else if (route === '/who') res.end(`you are ${from}\n`);
    else if (route === '/barrier') {
      barrier.push(res);
      if (barrier.length === 2) {
        const addrs = (seen.get('/barrier') ?? []).slice(-2);
        for (const r of barrier.splice(0)) r.end(`met ${addrs.join(' ')}\n`);
      }
    } else if (route !== '/hold') res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    token,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
