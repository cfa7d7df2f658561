import { BuildError } from '../../../solver/build-error';
import { parseImageRef } from '../../../store/image-ref';

const D = 'sha256:' + 'ab'.repeat(32);

describe('parseImageRef', () => {
  test.each([
    ['busybox', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['library/busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined, 'docker.io/library/busybox:1.36', 'busybox:1.36'],
    ['foo/bar', 'docker.io', 'foo/bar', 'latest', undefined, 'docker.io/foo/bar:latest', 'foo/bar:latest'],
    ['index.docker.io/library/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'docker.io/library/alpine:latest', 'alpine:latest'],
    ['localhost/busybox', 'localhost', 'busybox', 'latest', undefined, 'localhost/busybox:latest', 'localhost/busybox:latest'],
    ['localhost:5000/busybox', 'localhost:5000', 'busybox', 'latest', undefined, 'localhost:5000/busybox:latest', 'localhost:5000/busybox:latest'],
    ['host.example:5000/a/b:tag', 'host.example:5000', 'a/b', 'tag', undefined, 'host.example:5000/a/b:tag', 'host.example:5000/a/b:tag'],
    ['[::1]:5000/x', '[::1]:5000', 'x', 'latest', undefined, '[::1]:5000/x:latest', '[::1]:5000/x:latest'],
    [`busybox@${D}`, 'docker.io', 'library/busybox', undefined, D, `docker.io/library/busybox@${D}`, `busybox@${D}`],
    [`127.0.0.1:5000/x:1@${D}`, '127.0.0.1:5000', 'x', '1', D, `127.0.0.1:5000/x:1@${D}`, `127.0.0.1:5000/x:1@${D}`],
    ['Registry/x', 'Registry', 'x', 'latest', undefined, 'Registry/x:latest', 'Registry/x:latest'],
    ['a/b__c/d-e.f:v_1.0-rc', 'docker.io', 'a/b__c/d-e.f', 'v_1.0-rc', undefined, 'docker.io/a/b__c/d-e.f:v_1.0-rc', 'a/b__c/d-e.f:v_1.0-rc'],
  ])('%s', (input, registry, repository, tag, digest, full, familiar) => {
    const ref = parseImageRef(input);
    expect(ref.registry).toBe(registry);
    expect(ref.repository).toBe(repository);
    expect(ref.tag).toBe(tag);
    expect(ref.digest).toBe(digest);
    expect(ref.toString()).toBe(full);
    expect(`${ref}`).toBe(full);
    expect(ref.familiar).toBe(familiar);
    expect(parseImageRef(full).toString()).toBe(full);
  });

  test.each([
    '', 'Busybox', 'busybox:', 'busybox:-x', 'busybox@sha256:abc', `busybox@md5:${'a'.repeat(32)}`,
    'a//b', '/busybox', 'busybox/', 'bad_host:5000:x/y', 'foo/Bar', 'a/b:' + 't'.repeat(129), 'x'.repeat(300),
    'host-.com/x', 'a..b/c',
  ])('rejects %j as invalid-argument', (input) => {
    let err: unknown;
    try {
      parseImageRef(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toMatch(/^Cannot parse image reference /);
  });

  test('withDigest keeps the tag and withTag drops the digest', () => {
    const ref = parseImageRef('busybox:1').withDigest(D);
    expect(ref.toString()).toBe(`docker.io/library/busybox:1@${D}`);
    expect(ref.withTag('2').toString()).toBe('docker.io/library/busybox:2');
    expect(() => ref.withDigest('sha256:x')).toThrow(BuildError);
  });
});

describe('ImageRef.withRegistry', () => {
  test('keeps repository, tag and digest, on another registry', () => {
    const d = 'sha256:' + 'a'.repeat(64);
    expect(parseImageRef(`busybox:1@${d}`).withRegistry('mirror.local:5000').toString()).toBe(`mirror.local:5000/library/busybox:1@${d}`);
    expect(parseImageRef('reg.example/team/app').withRegistry('m.local').toString()).toBe('m.local/team/app:latest');
  });
});
