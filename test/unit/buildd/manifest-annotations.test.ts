import { manifestAnnotations } from '../../../buildd/manifest-annotations';

describe('manifest annotations of an output', () => {
  test('annotation.K and annotation-manifest.K go on the manifest; a [PLATFORM] one only on that platform', () => {
    expect(manifestAnnotations({
      name: 'x',
      'annotation.org.opencontainers.image.title': 'hello',
      'annotation-manifest.org.example.a': 'b',
      'annotation[linux/amd64].only.amd64': '1',
      'annotation-manifest[linux/arm64].only.arm64': '2',
      'annotation-index.org.example.i': 'not the manifest',
      'annotation-manifest-descriptor.org.example.d': 'not the manifest',
    }, 'linux/amd64')).toEqual({ 'org.opencontainers.image.title': 'hello', 'org.example.a': 'b', 'only.amd64': '1' });
    expect(manifestAnnotations({ name: 'x' }, 'linux/amd64')).toBeUndefined();
    expect(manifestAnnotations({ 'annotation.__proto__': 'v' }, 'linux/amd64')).toEqual(JSON.parse('{"__proto__":"v"}'));
  });

  test('an oversized annotation is refused, naming it', () => {
    expect(() => manifestAnnotations({ 'annotation.k': 'v'.repeat(70_000) }, 'linux/amd64')).toThrow('Cannot use --output attribute annotation.k: an annotation is at most a 1 KiB key and a 64 KiB value');
  });
});
