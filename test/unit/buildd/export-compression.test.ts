import { exportCompression } from '../../../buildd/export-compression';

describe('exportCompression', () => {
  it('is gzip at zlib\'s default level, nothing forced, when the output says nothing', () => {
    expect(exportCompression({})).toEqual({ compression: { type: 'gzip', level: 6 }, force: false });
  });

  it.each([
    [{ compression: 'zstd' }, { compression: { type: 'zstd', level: 3 }, force: false }],
    [{ compression: 'zstd', 'compression-level': '0' }, { compression: { type: 'zstd', level: 0 }, force: false }],
    [{ compression: 'zstd', 'compression-level': '22', 'force-compression': '' }, { compression: { type: 'zstd', level: 22 }, force: true }],
    [{ compression: 'gzip', 'compression-level': ' 9 ' }, { compression: { type: 'gzip', level: 9 }, force: false }],
    [{ 'compression-level': '0', 'force-compression': 'false' }, { compression: { type: 'gzip', level: 0 }, force: false }],
    // BuildKit ignores the level of uncompressed layers.
    [{ compression: 'uncompressed', 'compression-level': '30', 'force-compression': '1' }, { compression: { type: 'uncompressed' }, force: true }],
  ])('reads %j', (attrs, want) => {
    expect(exportCompression(attrs)).toEqual(want);
  });

  it('refuses an uncompressed level that is not a number, as BuildKit does', () => {
    expect(() => exportCompression({ compression: 'uncompressed', 'compression-level': 'x' })).toThrow('Cannot use --output attribute compression-level="x": not an integer');
  });
});
