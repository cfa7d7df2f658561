import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildGeneration, type PlannedEntry } from '../../../buildd/locals/generation-builder';
import type { IndexEntry } from '../../../buildd/locals/listing-index';
import { checksumPaths } from '../../../store/content-checksum';
import { checksumOfListing } from '../../../store/listing-checksum';

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;

type Spec = { path: string; type: 'FILE' | 'DIR' | 'SYMLINK'; mode?: number; content?: string; target?: string; xattrs?: Record<string, Buffer> };

describe('checksumOfListing', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'listing-checksum-'));
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  /** A kept generation made from `specs` as the daemon makes one; its entries and file digests. */
  async function generation(specs: Spec[]): Promise<{ tree: string; entries: IndexEntry[]; digests: Map<string, string> }> {
    const dir = path.join(tmp, 'gen');
    await fsp.mkdir(dir);
    const planned: PlannedEntry[] = [];
    const digests = new Map<string, string>();
    let n = 0;
    for (const s of specs) {
      const content = Buffer.from(s.content ?? '');
      const entry: IndexEntry = { path: s.path, type: s.type, mode: s.mode ?? (s.type === 'DIR' ? 0o755 : 0o644), uid, gid, mtime_ms: 1_600_000_000_000, size: s.type === 'FILE' ? content.length : 0, link_target: s.target ?? '', xattrs: s.xattrs ?? {} };
      const p: PlannedEntry = { entry, change: 'content' };
      if (s.type === 'FILE') {
        digests.set(s.path, createHash('sha256').update(content).digest('hex'));
        if (content.length > 0) {
          p.staged = path.join(dir, `staged-${n++}`);
          await fsp.writeFile(p.staged, content);
        }
      }
      planned.push(p);
    }
    await buildGeneration({ dir, entries: planned, chown: uid === 0, signal: new AbortController().signal });
    return { tree: path.join(dir, 'tree'), entries: planned.map((p) => p.entry), digests };
  }

  // names that sort differently by bytes and by UTF-16, dotfiles, symbols, deep nesting
  const specs: Spec[] = [
    { path: 'src', type: 'DIR', mode: 0o750 },
    { path: 'src/é', type: 'FILE', content: 'accent' },
    { path: 'src/z', type: 'FILE', content: 'zed', mode: 0o600 },
    { path: 'src/Z', type: 'FILE', content: 'Zed' },
    { path: 'src/_u', type: 'FILE', content: '' },
    { path: 'src/.hidden', type: 'FILE', content: 'h' },
    { path: 'src/a b', type: 'DIR', mode: 0o555 },
    { path: 'src/a b/deep', type: 'DIR' },
    { path: 'src/a b/deep/f', type: 'FILE', content: 'deep', mode: 0o755 },
    { path: 'src/a-b', type: 'FILE', content: 'dash' },
    { path: 'src/a.b', type: 'SYMLINK', target: 'a-b' },
    { path: 'src/😀', type: 'FILE', content: 'emoji' },
    { path: 'src/ﬀ', type: 'FILE', content: 'ligature' },
    { path: 'Dockerfile', type: 'FILE', content: 'FROM scratch\n' },
    { path: 'link-dir', type: 'SYMLINK', target: 'src' },
    { path: 'empty', type: 'DIR', mode: 0o700 },
    { path: '~tilde', type: 'FILE', content: 'tilde', mode: 0o4755 },
  ];

  it('is what the walk gives for the whole tree, for every way of naming it', async () => {
    const { tree, entries, digests } = await generation(specs);
    for (const pattern of ['.', './', '/']) {
      const walked = await checksumPaths(tree, [pattern], undefined, {}, { cache: null });
      expect(checksumOfListing(entries, digests, [pattern])).toBe(walked);
    }
    // listing order does not matter
    expect(checksumOfListing([...entries].reverse(), digests, ['.'])).toBe(await checksumPaths(tree, ['.'], undefined, {}, { cache: null }));
  });

  it('leaves to the walk: another pattern, several patterns, a glob, an unknown digest, any extended attribute', async () => {
    const { entries, digests } = await generation(specs.slice(0, 3));
    expect(checksumOfListing(entries, digests, ['src'])).toBeUndefined();
    expect(checksumOfListing(entries, digests, ['.', '.'])).toBeUndefined();
    expect(checksumOfListing(entries, digests, ['*'])).toBeUndefined();
    const partial = new Map(digests);
    partial.delete('src/z');
    expect(checksumOfListing(entries, partial, ['.'])).toBeUndefined();
    const withXattr = entries.map((e) => (e.path === 'src/z' ? { ...e, xattrs: { 'user.k': Buffer.from('v') } } : e));
    expect(checksumOfListing(withXattr, digests, ['.'])).toBeUndefined();
  });
});
