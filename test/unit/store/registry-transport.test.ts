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
