import { boolAttr } from '../../../buildd/bool-attr';
import { frontendOptWarnings } from '../../../buildd/frontend-opt-warnings';
import { outputAttrWarnings } from '../../../buildd/output-attr-warnings';
import { BuildError } from '../../../solver/build-error';

describe('--opt keys of the Dockerfile frontend', () => {
  it('says nothing about any option buildd implements', () => {
    expect(frontendOptWarnings({
      filename: 'Dockerfile.dev', target: 'final', platform: 'linux/amd64',
      'build-arg:VERSION': '1', 'build-arg:http_proxy': 'x', 'context:base': 'docker-image://busybox',
    })).toEqual([]);
  });

  it.each([
    ['targt', '--opt targt is unknown and was ignored: did you mean target?'],
    ['filname', '--opt filname is unknown and was ignored: did you mean filename?'],
    ['platfrom', '--opt platfrom is unknown and was ignored: did you mean platform?'],
    ['build-args:V', '--opt build-args:V is unknown and was ignored: did you mean build-arg:V?'],
    ['buildarg:V', '--opt buildarg:V is unknown and was ignored: did you mean build-arg:V?'],
    ['contxt:base', '--opt contxt:base is unknown and was ignored: did you mean context:base?'],
    ['lable:x', '--opt lable:x is unknown and was ignored: did you mean label:x?'],
    ['frobnicate', '--opt frobnicate is unknown and was ignored'],
    ['x', '--opt x is unknown and was ignored'],
  ])('warns that %s is unknown, with a suggestion when one is close', (key, message) => {
    expect(frontendOptWarnings({ [key]: 'v' })).toEqual([message]);
  });

  it.each([
    'label:org.opencontainers.image.title', 'no-cache', 'add-hosts', 'cgroup-parent', 'cmdline',
    'contextkey', 'contextsubdir', 'cpuperiod', 'cpuquota', 'cpusetcpus', 'cpusetmems', 'cpushares', 'dockerfilekey',
    'frontend.caps', 'image-resolve-mode', 'memory', 'memswap', 'multi-platform',
    'requestid', 'shm-size', 'source', 'ulimit', 'attest:sbom', 'attest:provenance', 'input-metadata:x',
    'local-sessionid:context', 'sharedkey:localdir:context', 'vcs:source',
  ])('warns that %s is known to BuildKit but not supported yet', (key) => {
    const [message, ...rest] = frontendOptWarnings({ [key]: 'v' });
    expect(rest).toEqual([]);
    expect(message).toMatch(new RegExp(`^--opt ${key.replace(/[.]/g, '\\.')} is not supported yet(: ignored; .*| and was ignored)$`));
  });

  it.each([
    'BUILDKIT_CACHE_MOUNT_NS', 'BUILDKIT_CONTEXT_KEEP_GIT_DIR', 'BUILDKIT_DOCKERFILE_CHECK',
    'BUILDKIT_MULTI_PLATFORM', 'BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE',
    'BUILDKIT_SYNTAX', 'BUILDKIT_ATTEST_PROVENANCE',
  ])('says build-arg:%s reaches the Dockerfile as a build arg only', (arg) => {
    expect(frontendOptWarnings({ [`build-arg:${arg}`]: '1' })).toEqual([
      `--opt build-arg:${arg} is not supported yet: only the build arg is set, BuildKit's meaning of it is ignored`,
    ]);
  });

  it('takes the cache options of the frontend without a word: cache-from, cache-imports, BUILDKIT_INLINE_CACHE', () => {
    expect(frontendOptWarnings({ 'cache-from': 'r/app:cache', 'cache-imports': '[]', 'build-arg:BUILDKIT_INLINE_CACHE': '1' })).toEqual([]);
  });

  it('takes build-arg:SOURCE_DATE_EPOCH without a word: the exporters use it', () => {
    expect(frontendOptWarnings({ 'build-arg:SOURCE_DATE_EPOCH': '1700000000' })).toEqual([]);
  });

  it('gives one warning per ignored key, in key order, and names the no-cache alternative', () => {
    expect(frontendOptWarnings({ targt: 'x', target: 'y', 'no-cache': '' })).toEqual([
      '--opt no-cache is not supported yet: ignored; use buildctl build --no-cache',
      '--opt targt is unknown and was ignored: did you mean target?',
    ]);
  });

  it('quotes a key that would garble the terminal', () => {
    expect(frontendOptWarnings({ 'a\x1b[2Jb': 'v' })).toEqual(['--opt "a\\u001b[2Jb" is unknown and was ignored']);
  });
});

describe('--output attributes', () => {
  it('says nothing about any attribute buildd implements, or a value it produces anyway', () => {
    expect(outputAttrWarnings({ type: 'image', attrs: { name: 'r/a:1,r/b:2', push: 'true', 'registry.insecure': 'true', store: 'true', compression: 'gzip', 'oci-mediatypes': 'true' } })).toEqual([]);
    expect(outputAttrWarnings({ type: 'oci', attrs: { name: 'app', tar: 'true', compression: 'gzip' } })).toEqual([]);
    expect(outputAttrWarnings({ type: 'docker', attrs: { name: 'app', tar: '' } })).toEqual([]);
    expect(outputAttrWarnings({ type: 'image', attrs: {} })).toEqual([]);
  });

  it.each<Record<string, string>>([
    { compression: 'zstd', 'compression-level': '19', 'force-compression': 'true' },
    { compression: 'gzip', 'compression-level': '9' },
    { compression: 'uncompressed', 'force-compression': 'false' },
  ])('says nothing about the compression attributes, implemented now: %j', (attrs) => {
    for (const type of ['image', 'oci', 'docker'] as const) expect(outputAttrWarnings({ type, attrs })).toEqual([]);
  });

  it.each([
    [{ compression: 'estargz' }, 'Cannot use --output attribute compression=estargz: estargz is not supported by buildd (use gzip, zstd or uncompressed)'],
    [{ compression: 'lz4' }, 'Cannot use --output attribute compression="lz4": unsupported layer compression type (gzip, zstd, uncompressed)'],
    [{ compression: 'zstd', 'compression-level': '23' }, 'Cannot use --output attribute compression-level=23: zstd levels are 0 to 22'],
    [{ 'compression-level': '10' }, 'Cannot use --output attribute compression-level=10: gzip levels are 0 to 9'],
    [{ compression: 'gzip', 'compression-level': '-1' }, 'Cannot use --output attribute compression-level=-1: gzip levels are 0 to 9'],
    [{ compression: 'zstd', 'compression-level': 'best' }, 'Cannot use --output attribute compression-level="best": not an integer'],
    [{ 'force-compression': 'yes' }, 'Cannot use --output attribute force-compression=yes: expected true or false'],
  ])('refuses a compression it cannot write, before the build, naming the attribute: %j', (attrs, message) => {
    expect(() => outputAttrWarnings({ type: 'oci', attrs })).toThrow(expect.objectContaining({ code: 'invalid-argument', message }));
  });

  it.each([
    ['oci', 'compresion', 'zstd', '--output type=oci: compresion is unknown and was ignored: did you mean compression?'],
    ['image', 'nmae', 'reg/app', '--output type=image: nmae is unknown and was ignored: did you mean name?'],
    ['image', 'puhs', 'true', '--output type=image: puhs is unknown and was ignored: did you mean push?'],
    ['image', 'registry.insecur', 'true', '--output type=image: registry.insecur is unknown and was ignored: did you mean registry.insecure?'],
    ['oci', 'anotation.org.x', 'v', '--output type=oci: anotation.org.x is unknown and was ignored: did you mean annotation.org.x?'],
    ['docker', 'label:x', 'v', '--output type=docker: label:x is unknown and was ignored'],
    ['oci', 'push', 'true', '--output type=oci: push is unknown and was ignored'],
    ['image', 'tar', 'false', '--output type=image: tar is unknown and was ignored'],
  ])('type=%s: warns that %s is unknown', (type, key, value, message) => {
    expect(outputAttrWarnings({ type: type as 'image' | 'oci' | 'docker', attrs: { [key]: value } })).toEqual([message]);
  });

  it.each([
    ['oci', 'tar', 'false', '--output type=oci: tar=false is not supported yet: ignored; buildd writes a tar'],
    ['image', 'store', 'false', '--output type=image: store=false is not supported yet: ignored; buildd always stores a named image'],
    ...['oci-artifact', 'attestation-inline', 'prefer-nondist-layers',
      'annotation-index.k', 'annotation-index-descriptor.k', 'annotation-manifest-descriptor.k', 'annotation-manifest-descriptor[linux/arm64].k']
      .map((key) => ['oci', key, '1', `--output type=oci: ${key} is not supported yet and was ignored`]),
    ...['dangling-name-prefix', 'danging-name-empty-only', 'name-canonical', 'unpack', 'unsafe-internal-store-allow-incomplete']
      .map((key) => ['image', key, 'true', `--output type=image: ${key} is not supported yet and was ignored`]),
  ])('type=%s: warns that %s=%s is not supported yet', (type, key, value, message) => {
    expect(outputAttrWarnings({ type: type as 'image' | 'oci' | 'docker', attrs: { [key]: value } })).toEqual([message]);
  });

  it('takes source-date-epoch on every output and rewrite-timestamp on the image ones', () => {
    for (const type of ['image', 'oci', 'docker'] as const) expect(outputAttrWarnings({ type, attrs: { 'rewrite-timestamp': 'true', 'source-date-epoch': '0' } })).toEqual([]);
    for (const type of ['tar', 'local'] as const) expect(outputAttrWarnings({ type, attrs: { 'source-date-epoch': '0' } })).toEqual([]);
    expect(() => outputAttrWarnings({ type: 'oci', attrs: { 'rewrite-timestamp': 'yes' } })).toThrow('Cannot use --output attribute rewrite-timestamp=yes: expected true or false');
  });

  it('takes the manifest annotations without a warning', () => {
    for (const key of ['annotation.org.opencontainers.image.title', 'annotation[linux/amd64].k', 'annotation-manifest.k', 'annotation-manifest[linux/amd64].k']) {
      expect(outputAttrWarnings({ type: 'oci', attrs: { [key]: 'v' } })).toEqual([]);
    }
  });

  it.each([
    [{ push: 'yes' }, 'Cannot use --output attribute push=yes: expected true or false'],
    [{ 'registry.insecure': 'on' }, 'Cannot use --output attribute registry.insecure=on: expected true or false'],
  ])('fails, as BuildKit does, on a boolean it cannot read: %j', (attrs, message) => {
    expect(() => outputAttrWarnings({ type: 'image', attrs: { name: 'a', ...attrs } })).toThrow(expect.objectContaining({ code: 'invalid-argument', message }));
  });

  it('fails, as BuildKit does, on an annotation of an unknown type', () => {
    expect(() => outputAttrWarnings({ type: 'oci', attrs: { 'annotation-manifests.k': 'v' } })).toThrow(expect.objectContaining({
      code: 'invalid-argument',
      message: 'Cannot use --output attribute annotation-manifests.k: unrecognized annotation type manifests (index, index-descriptor, manifest, manifest-descriptor)',
    }));
  });
});

describe('boolean attributes', () => {
  it('reads them as Go ParseBool does, a bare key as true', () => {
    expect(boolAttr({}, 'push', false)).toBe(false);
    expect(boolAttr({ push: '' }, 'push', false)).toBe(true);
    for (const v of ['1', 't', 'T', 'TRUE', 'true', 'True']) expect(boolAttr({ push: v }, 'push', false)).toBe(true);
    for (const v of ['0', 'f', 'F', 'FALSE', 'false', 'False']) expect(boolAttr({ push: v }, 'push', true)).toBe(false);
    expect(() => boolAttr({ push: 'yes' }, 'push', false)).toThrow(BuildError);
  });
});
