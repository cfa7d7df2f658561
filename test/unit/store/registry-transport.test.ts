import { RegistryTransport } from '../../../store/registry-transport';

describe('RegistryTransport.url', () => {
  const transport = new RegistryTransport({ insecureRegistries: ['reg.lan:5000'] });
  afterAll(() => transport.close());

  test.each([
    ['localhost', 'http://localhost/v2/x/manifests/1'],
    ['localhost:5000', 'http://localhost:5000/v2/x/manifests/1'],
    ['127.0.0.1:5000', 'http://127.0.0.1:5000/v2/x/manifests/1'],
    ['[::1]:5000', 'http://[::1]:5000/v2/x/manifests/1'],
    ['reg.lan:5000', 'http://reg.lan:5000/v2/x/manifests/1'],
    ['reg.lan', 'https://reg.lan/v2/x/manifests/1'],
    ['ghcr.io', 'https://ghcr.io/v2/x/manifests/1'],
    ['docker.io', 'https://registry-1.docker.io/v2/x/manifests/1'],
  ])('%s → %s (plain HTTP only for loopback and insecure registries)', (registry, url) => {
    expect(transport.url(registry, 'x/manifests/1').toString()).toBe(url);
  });
});
