import { DistributionError } from '../../../../buildd/registry/distribution-error';
import { repositoryName, routeOf } from '../../../../buildd/registry/repository-names';

const D = 'sha256:' + 'a'.repeat(64);

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof DistributionError ? err.code : 'not a DistributionError';
  }
}

describe('repository names and routes of the embedded registry', () => {
  test('names follow the Distribution grammar', () => {
    for (const ok of ['a', 'library/busybox', 'a.b_c__d-e--f/g0', 'x/y/z']) expect(repositoryName(ok)).toBe(ok);
    for (const bad of ['', 'A', 'a/../b', '..', 'a//b', '/a', 'a/', '-a', 'a-', 'a__', 'a___b', 'a%2e', 'a b', 'a'.repeat(256)]) {
      expect(code(() => repositoryName(bad))).toBe('NAME_INVALID');
    }
  });

  test('routes split the name from the operation, names with slashes included', () => {
    expect(routeOf('/v2/')).toEqual({ kind: 'base' });
    expect(routeOf('/v2/_catalog')).toEqual({ kind: 'catalog' });
    expect(routeOf('/v2/a/b/tags/list')).toEqual({ kind: 'tags', name: 'a/b' });
    expect(routeOf('/v2/a/b/manifests/v1.0')).toEqual({ kind: 'manifest', name: 'a/b', reference: 'v1.0' });
    expect(routeOf(`/v2/a/manifests/${D}`)).toEqual({ kind: 'manifest', name: 'a', reference: D });
    expect(routeOf(`/v2/a/blobs/${D}`)).toEqual({ kind: 'blob', name: 'a', digest: D });
    expect(routeOf('/v2/a/blobs/uploads/')).toEqual({ kind: 'uploads', name: 'a' });
    expect(routeOf('/v2/a/blobs/uploads/0b7e-11')).toEqual({ kind: 'upload', name: 'a', id: '0b7e-11' });
    expect(routeOf(`/v2/a/referrers/${D}`)).toEqual({ kind: 'referrers', name: 'a', digest: D });
    expect(routeOf('/v1/a')).toBeUndefined();
    expect(routeOf('/v2/a/other')).toBeUndefined();
  });

  test('a bad name, tag or digest in a route is refused with the spec code', () => {
    expect(code(() => routeOf('/v2/../x/tags/list'))).toBe('NAME_INVALID');
    expect(code(() => routeOf('/v2/a/manifests/-bad'))).toBe('MANIFEST_INVALID');
    expect(code(() => routeOf('/v2/a/blobs/md5:abc'))).toBe('DIGEST_INVALID');
    expect(code(() => routeOf(`/v2/a/blobs/sha256:${'A'.repeat(64)}`))).toBe('DIGEST_INVALID');
  });
});
