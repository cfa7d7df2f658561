import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { BuildError } from '../../../solver/build-error';
import { parseImageRef } from '../../../store/image-ref';
import { RegistryTransport } from '../../../store/registry-transport';

describe('RegistryTransport.url', () => {
  const transport = new RegistryTransport({
    insecureRegistries: ['reg.lan:5000'],
    registries: {
      'plain.lan': { http: true },
      'localhost:5001': { http: false },
      '127.0.0.1:5002': { ca: ['/nowhere/ca.pem'] },
      'skip.lan': { insecure: true, http: false },
    },
  });
  afterAll(() => transport.close());

  test.each([
    ['localhost', 'http://localhost/v2/x/manifests/1'],
    ['localhost:5000', 'http://localhost:5000/v2/x/manifests/1'],
    ['127.0.0.1:5000', 'http://127.0.0.1:5000/v2/x/manifests/1'],
    ['[::1]:5000', 'http://[::1]:5000/v2/x/manifests/1'],
    // As BuildKit: a CA alone does not turn a loopback registry to HTTPS; http: false does.
    ['127.0.0.1:5002', 'http://127.0.0.1:5002/v2/x/manifests/1'],
    ['localhost:5001', 'https://localhost:5001/v2/x/manifests/1'],
    ['plain.lan', 'http://plain.lan/v2/x/manifests/1'],
    // insecure tries HTTPS (unverified) first; plain HTTP only once the host shows it speaks no TLS.
    ['reg.lan:5000', 'https://reg.lan:5000/v2/x/manifests/1'],
    ['skip.lan', 'https://skip.lan/v2/x/manifests/1'],
    ['reg.lan', 'https://reg.lan/v2/x/manifests/1'],
    ['ghcr.io', 'https://ghcr.io/v2/x/manifests/1'],
    ['docker.io', 'https://registry-1.docker.io/v2/x/manifests/1'],
  ])('%s → %s', (registry, url) => {
    expect(transport.url(registry, 'x/manifests/1').toString()).toBe(url);
  });
});

/** A loopback HTTP server answering every request with `answer`; records the Host headers. */
async function startServer(answer: (res: ServerResponse) => void): Promise<{ port: number; hosts: string[]; stop(): Promise<void> }> {
  const hosts: string[] = [];
  const server = createServer((req, res) => {
    hosts.push(req.headers.host ?? '');
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    hosts,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('an insecure registry named with :443 that speaks only plain HTTP', () => {
  test('falls back to plain HTTP on port 443, not 80', async () => {
    const server = await startServer((res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    // Every connection, whatever port it is for, reaches the test server: what is tested is
    // which URL the transport asks for, and that it falls back at all.
    const connector = buildConnector({});
    const agent = new Agent({ connect: (opts, cb) => connector({ ...opts, hostname: '127.0.0.1', port: String(server.port) }, cb) });
    const transport = new RegistryTransport({ insecureRegistries: ['reg.test:443'], dispatcher: agent });
    try {
      const ref = parseImageRef('reg.test:443/app:1');
      const url = transport.url(ref.registry, 'app/manifests/1');
      const res = await transport.send(ref, 'pull', 'repository:app:pull', url, { method: 'GET' });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(server.hosts).toEqual(['reg.test:443']);
      expect(transport.url(ref.registry, 'x').toString()).toBe('http://reg.test:443/v2/x');
    } finally {
      await transport.close();
      await agent.close();
      await server.stop();
    }
  });
});

describe('a bare 400 over plain HTTP that is not a TLS port', () => {
  test("the registry's own error words are in the error", async () => {
    const server = await startServer((res) => {
      // No content type: the transport reads the body to tell whether it is Go's TLS-port reply.
      res.writeHead(400).end(JSON.stringify({ errors: [{ code: 'MANIFEST_INVALID', message: 'Manifest Invalid: layer missing' }] }));
    });
    const transport = new RegistryTransport({});
    try {
      const ref = parseImageRef(`127.0.0.1:${server.port}/app:1`);
      const url = transport.url(ref.registry, 'app/manifests/1');
      const res = await transport.send(ref, 'push', 'repository:app:pull,push', url, { method: 'PUT', body: async () => '{}' });
      expect(res.statusCode).toBe(400);
      const err = await transport.fail(res, ref, 'push', 'manifest');
      expect(err.code).toBe('invalid-argument');
      expect(err.message).toBe(`Cannot push 127.0.0.1:${server.port}/app:1: manifest: manifest invalid: layer missing (400 from 127.0.0.1:${server.port})`);
    } finally {
      await transport.close();
      await server.stop();
    }
  });

  test("Go's reply on a TLS port still says to set http to false", async () => {
    const server = await startServer((res) => res.writeHead(400).end('Client sent an HTTP request to an HTTPS server.\n'));
    const transport = new RegistryTransport({});
    try {
      const ref = parseImageRef(`127.0.0.1:${server.port}/app:1`);
      const url = transport.url(ref.registry, 'app/manifests/1');
      const err = await transport.send(ref, 'pull', 'repository:app:pull', url, { method: 'GET' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BuildError);
      expect((err as BuildError).code).toBe('failed-precondition');
      expect((err as BuildError).message).toBe(`Cannot pull 127.0.0.1:${server.port}/app:1: 127.0.0.1:${server.port} speaks HTTPS, not plain HTTP (400); ` +
        `set registry."127.0.0.1:${server.port}".http to false in the daemon config`);
    } finally {
      await transport.close();
      await server.stop();
    }
  });
});

describe('insecureRegistries on top of registries', () => {
  test('insecure wins over a setting of the same host under its other name', () => {
    const transport = new RegistryTransport({
      registries: { 'reg.lan': { http: true }, 'reg.lan:443': { insecure: false } },
      insecureRegistries: ['reg.lan'],
    });
    // insecure: HTTPS first (unverified), plain HTTP only once the host shows it speaks no TLS.
    expect(transport.url('reg.lan', 'x').toString()).toBe('https://reg.lan/v2/x');
    expect(transport.url('reg.lan:443', 'x').toString()).toBe('https://reg.lan/v2/x');
    return transport.close();
  });
});
