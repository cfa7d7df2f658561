import { cacheExportSpecs, cacheImportSpecs } from '../../../../buildd/cache-io/cache-specs';
import { checkedConfig } from '../../../../buildd/cache-io/registry-cache';
import { parseCacheFlag } from '../../../../buildctl/cache-flag';
import { frontendCacheImports, frontendInlineCache } from '../../../../buildd/cache-io/frontend-cache-opts';

const d = (c: string): string => `sha256:${c.repeat(64)}`;

describe('--export-cache and --import-cache', () => {
  test('buildctl reads key=value pairs and the legacy bare ref', () => {
    expect(parseCacheFlag('--export-cache', 'type=registry,ref=r.example/app:cache,mode=max')).toEqual({ type: 'registry', attrs: { ref: 'r.example/app:cache', mode: 'max' } });
    expect(parseCacheFlag('--import-cache', 'r.example/app:cache')).toEqual({ type: 'registry', attrs: { ref: 'r.example/app:cache' } });
    // as BuildKit: without type= the whole value is a registry ref
    expect(parseCacheFlag('--import-cache', 'r.example/app@sha256:' + 'a'.repeat(64))).toEqual({ type: 'registry', attrs: { ref: 'r.example/app@sha256:' + 'a'.repeat(64) } });
    expect(() => parseCacheFlag('--import-cache', 'type=,ref=r.example/app')).toThrow('type is missing');
    expect(() => parseCacheFlag('--import-cache', 'type=registry,oops')).toThrow('"oops" is not key=value');
  });

  test('buildctl reads the value as one CSV record, as Go\'s encoding/csv: a quoted field keeps its commas', () => {
    expect(parseCacheFlag('--export-cache', 'type=local,"dest=/tmp/a,b",mode=max')).toEqual({ type: 'local', attrs: { dest: '/tmp/a,b', mode: 'max' } });
    expect(parseCacheFlag('--import-cache', 'type=local,"src=/tmp/say ""hi"" "')).toEqual({ type: 'local', attrs: { src: '/tmp/say "hi" ' } });
    expect(() => parseCacheFlag('--import-cache', 'type=local,"src=/tmp/a')).toThrow('unterminated quote');
  });

  test('an export defaults to mode=min and gzip; mode, compression and ignore-error are read as BuildKit names them', () => {
    const warnings: string[] = [];
    const [min] = cacheExportSpecs([{ type: 'registry', attrs: { ref: 'localhost:5000/c' } }], (w) => warnings.push(w));
    expect(min).toMatchObject({ type: 'registry', ref: 'localhost:5000/c:latest', mode: 'min', ignoreError: false, request: { compression: { type: 'gzip' } } });
    const [max] = cacheExportSpecs([{ type: 'registry', attrs: { ref: 'localhost:5000/c:1', mode: 'max', compression: 'zstd', 'ignore-error': 'true', colour: 'red' } }], (w) => warnings.push(w));
    expect(max).toMatchObject({ mode: 'max', ignoreError: true, request: { compression: { type: 'zstd' } } });
    expect(warnings).toEqual(['--export-cache type=registry: attribute colour is not known to buildd and is ignored']);
  });

  test('what buildd does not export or import is refused, naming it', () => {
    const warn = (): void => undefined;
    expect(cacheExportSpecs([{ type: 'local', attrs: { mode: 'max' } }], warn)).toMatchObject([{ type: 'local', entry: 0, tag: 'latest', mode: 'max' }]);
    expect(cacheImportSpecs([{ type: 'registry', attrs: { ref: 'r/x' } }, { type: 'local', attrs: { tag: 'v1' } }], warn)).toMatchObject([{ type: 'registry' }, { type: 'local', entry: 1, tag: 'v1' }]);
    expect(() => cacheImportSpecs([{ type: 'local', attrs: { tag: '../x' } }], warn)).toThrow('tag=../x is not a tag');
    expect(() => cacheExportSpecs([{ type: 'gha', attrs: {} }], warn)).toThrow('Cannot export cache type=gha');
    expect(() => cacheExportSpecs([{ type: 'registry', attrs: { ref: 'x', mode: 'all' } }], warn)).toThrow('mode=all is not min or max');
    expect(() => cacheExportSpecs([{ type: 'registry', attrs: {} }], warn)).toThrow('ref=REPOSITORY[:TAG] is missing');
    expect(() => cacheExportSpecs([{ type: 'registry', attrs: { ref: 'x', compression: 'lz4' } }], warn)).toThrow('--export-cache attribute compression="lz4"');
    expect(() => cacheImportSpecs([{ type: 'inline', attrs: {} }], warn)).toThrow('an inline cache is imported with type=registry,ref=IMAGE');
    expect(() => cacheImportSpecs([{ type: 'registry', attrs: { ref: 'bad ref' } }], warn)).toThrow('Cannot import cache type=registry: ref=bad ref');
  });
});

describe('cache options through the Dockerfile frontend, as BuildKit\'s dockerui reads them', () => {
  test('cache-imports (JSON) wins over cache-from (comma-separated registry refs)', () => {
    expect(frontendCacheImports({ 'cache-from': 'r/a:c, r/b:c' })).toEqual([{ type: 'registry', attrs: { ref: 'r/a:c' } }, { type: 'registry', attrs: { ref: 'r/b:c' } }]);
    expect(frontendCacheImports({ 'cache-from': 'r/a:c', 'cache-imports': '[{"Type":"registry","Attrs":{"ref":"r/x:1"}}]' })).toEqual([{ type: 'registry', attrs: { ref: 'r/x:1' } }]);
    expect(frontendCacheImports({})).toEqual([]);
    expect(() => frontendCacheImports({ 'cache-imports': '{' })).toThrow('Cannot read --opt cache-imports: not JSON');
    expect(() => frontendCacheImports({ 'cache-imports': '[{"Attrs":{}}]' })).toThrow('Cannot read --opt cache-imports');
  });

  test('build-arg:BUILDKIT_INLINE_CACHE=1 asks for an inline cache', () => {
    expect(frontendInlineCache({ 'build-arg:BUILDKIT_INLINE_CACHE': '1' })).toBe(true);
    expect(frontendInlineCache({ 'build-arg:BUILDKIT_INLINE_CACHE': '0' })).toBe(false);
    expect(frontendInlineCache({})).toBe(false);
  });
});

describe('an imported cache config', () => {
  const blobs = [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('a'), size: 10 }];
  const good = { schemaVersion: 1, layers: [{ digest: d('a'), diffId: d('b'), origin: 'build' }], records: [{ key: d('c'), chain: [{ layer: 0, createdAt: '2026-12-03T00:00:00Z' }] }] };

  test('is checked against its manifest: each layer is the blob at its position', () => {
    expect(checkedConfig('r', good, blobs).records).toHaveLength(1);
    expect(() => checkedConfig('r', good, [{ ...blobs[0], digest: d('e') }])).toThrow(`layer 0 is ${d('e')} in the manifest, ${d('a')} in the config`);
    expect(() => checkedConfig('r', good, [])).toThrow('the config names 1 layers, the manifest has 0');
    expect(() => checkedConfig('r', good, [{ ...blobs[0], mediaType: 'application/vnd.oci.image.config.v1+json' }])).toThrow("not a layer's");
    const zstdClaim = { ...good, layers: [{ ...good.layers[0], compression: { type: 'zstd' } }] };
    expect(() => checkedConfig('r', zstdClaim, blobs)).toThrow('layer 0 is gzip by its media type, zstd by the config');
  });

  test('a chain naming a layer that is not there, or an unknown field, is malformed', () => {
    expect(() => checkedConfig('r', { ...good, records: [{ key: d('c'), chain: [{ layer: 3, createdAt: '2026-12-03T00:00:00Z' }] }] }, blobs)).toThrow('malformed cache config');
    expect(() => checkedConfig('r', { ...good, extra: 1 }, blobs)).toThrow('malformed cache config');
    expect(() => checkedConfig('r', { ...good, records: [{ key: 'not-a-digest', chain: [] }] }, blobs)).toThrow('malformed cache config');
  });
});
