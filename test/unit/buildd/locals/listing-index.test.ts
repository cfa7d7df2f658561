import { compareEntry, indexLine, parseIndex, type IndexEntry } from '../../../../buildd/locals/listing-index';

const base: IndexEntry = { path: 'a/b', type: 'FILE', mode: 0o644, uid: 1, gid: 2, mtime_ms: 1000, link_target: '', size: 10, xattrs: { 'user.x': Buffer.from('1') } };

describe('compareEntry', () => {
  it('says same for an identical entry, content for a new one', () => {
    expect(compareEntry(base, { ...base, xattrs: { 'user.x': Buffer.from('1') } })).toBe('same');
    expect(compareEntry(undefined, base)).toBe('content');
  });
  it.each<[string, Partial<IndexEntry>]>([
    ['size', { size: 11 }],
    ['mtime', { mtime_ms: 1001 }],
    ['type', { type: 'DIR', size: 0 }],
  ])('says content when the %s changed', (_n, change) => {
    expect(compareEntry(base, { ...base, ...change })).toBe('content');
  });
  it.each<[string, Partial<IndexEntry>]>([
    ['mode', { mode: 0o755 }],
    ['uid', { uid: 0 }],
    ['gid', { gid: 0 }],
    ['xattr value', { xattrs: { 'user.x': Buffer.from('2') } }],
    ['xattr removed', { xattrs: {} }],
    ['xattr renamed', { xattrs: { 'user.y': Buffer.from('1') } }],
  ])('says metadata when only the %s changed', (_n, change) => {
    expect(compareEntry(base, { ...base, ...change })).toBe('metadata');
  });
  it('says metadata when a symlink target changed with the same size and mtime', () => {
    const link: IndexEntry = { ...base, type: 'SYMLINK', size: 0, link_target: 'x', xattrs: {} };
    expect(compareEntry(link, { ...link, link_target: 'y' })).toBe('metadata');
  });
});

describe('index lines', () => {
  it('round-trip every field, xattr bytes included', () => {
    const link: IndexEntry = { path: 'l', type: 'SYMLINK', mode: 0o777, uid: 0, gid: 0, mtime_ms: -5, link_target: '../t', size: 0, xattrs: {} };
    const bin: IndexEntry = { ...base, xattrs: { 'security.capability': Buffer.from([0, 1, 255]) } };
    const parsed = parseIndex([indexLine(base), indexLine(link), indexLine(bin)].join('\n') + '\n');
    expect([...parsed.keys()]).toEqual(['a/b', 'l']);
    expect(parsed.get('l')).toEqual(link);
    expect(compareEntry(parsed.get('a/b'), bin)).toBe('same');
  });
  it('refuses a damaged line', () => {
    expect(() => parseIndex('{"p":"x"}\n')).toThrow(/bad line/);
    expect(() => parseIndex('{not json\n')).toThrow();
  });
});
