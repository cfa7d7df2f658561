import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildGeneration, type PlannedEntry } from '../../../../buildd/locals/generation-builder';
import { canUpdateInPlace, updateGeneration } from '../../../../buildd/locals/generation-update';
import { compareEntry, parseIndex, type IndexEntry } from '../../../../buildd/locals/listing-index';

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
const T = 1_600_000_000_000;

/** A listing entry; files carry their content for staging. */
type Spec = { path: string; type: 'FILE' | 'DIR' | 'SYMLINK'; mode?: number; mtime?: number; content?: string; target?: string };

function entry(s: Spec): IndexEntry {
  const mode = s.mode ?? (s.type === 'DIR' ? 0o755 : s.type === 'SYMLINK' ? 0o777 : 0o644);
  return { path: s.path, type: s.type, mode, uid, gid, mtime_ms: s.mtime ?? T, size: Buffer.byteLength(s.content ?? ''), link_target: s.target ?? '', xattrs: {} };
}

/** Every entry of a tree, with owner, mode, time and content; lstat only. */
async function listTree(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const abs = path.join(root, r);
    const st = await fsp.lstat(abs);
    const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${Math.floor(st.mtimeMs)}`;
    if (st.isSymbolicLink()) out.push(`L ${r} -> ${await fsp.readlink(abs)} ${st.uid}:${st.gid} ${Math.floor(st.mtimeMs)}`);
    else if (st.isDirectory()) out.push(`D ${r} ${meta}`, ...(await listTree(root, r)));
    else out.push(`F ${r} ${meta} ${createHash('sha256').update(await fsp.readFile(abs)).digest('hex').slice(0, 12)}`);
  }
  return out;
}

function readOnly(content: string, mtime: number): Spec[] {
  return [
    { path: 'ro', type: 'DIR', mode: 0o555 },
    { path: 'ro/f', type: 'FILE', content, mtime },
  ];
}

describe('updateGeneration', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'gen-update-'));
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  /** Plans `specs` against `kept`, staging the content of every file whose content changed under `dir/received`. */
  async function plan(dir: string, specs: Spec[], kept?: ReadonlyMap<string, IndexEntry>): Promise<PlannedEntry[]> {
    await fsp.mkdir(dir, { recursive: true });
    let n = 0;
    const out: PlannedEntry[] = [];
    for (const s of specs) {
      const e = entry(s);
      const change = compareEntry(kept?.get(e.path), e);
      const p: PlannedEntry = { entry: e, change };
      if (e.type === 'FILE' && change === 'content' && e.size > 0) {
        p.staged = path.join(dir, `staged-${n++}`);
        await fsp.writeFile(p.staged, s.content ?? '');
      }
      out.push(p);
    }
    return out;
  }

  async function fresh(name: string, specs: Spec[]): Promise<string> {
    const dir = path.join(tmp, name);
    await buildGeneration({ dir, entries: await plan(dir, specs), chown: false, signal: new AbortController().signal });
    return dir;
  }

  const before: Spec[] = [
    { path: 'a', type: 'DIR' },
    { path: 'a/keep', type: 'FILE', content: 'keep' },
    { path: 'a/change', type: 'FILE', content: 'old' },
    { path: 'a/mode', type: 'FILE', content: 'mode', mode: 0o644 },
    { path: 'a/gone', type: 'FILE', content: 'gone' },
    { path: 'a/link', type: 'SYMLINK', target: 'keep' },
    { path: 'b', type: 'DIR', mtime: T + 5000 },
    { path: 'b/x', type: 'FILE', content: 'x' },
    { path: 'b/y', type: 'DIR' },
    { path: 'b/y/z', type: 'FILE', content: 'z' },
    { path: 'c', type: 'FILE', content: 'c was a file' },
    { path: 'd', type: 'DIR' },
    { path: 'd/in', type: 'FILE', content: 'd was a dir' },
    // root only: without it nothing changes what a 0555 directory holds (canUpdateInPlace says no)
    ...(uid === 0 ? readOnly('in a read-only dir', T) : []),
  ];
  const after: Spec[] = [
    { path: 'a', type: 'DIR' },
    { path: 'a/change', type: 'FILE', content: 'new content', mtime: T + 1000 },
    { path: 'a/keep', type: 'FILE', content: 'keep' },
    { path: 'a/link', type: 'SYMLINK', target: 'change' },
    { path: 'a/mode', type: 'FILE', content: 'mode', mode: 0o755 },
    { path: 'a/new', type: 'FILE', content: 'new file' },
    { path: 'a/empty', type: 'FILE', content: '' },
    // b and everything in it dropped
    { path: 'c', type: 'DIR', mode: 0o700 },
    { path: 'c/inside', type: 'FILE', content: 'c is a dir now' },
    { path: 'd', type: 'SYMLINK', target: 'c' },
    { path: 'e', type: 'DIR', mtime: T + 7000 },
    { path: 'e/f', type: 'FILE', content: 'in a new dir' },
    ...(uid === 0 ? readOnly('changed in a read-only dir', T + 2000) : []),
  ];

  it('gives the tree a fresh build of the new listing gives, keeps unchanged inodes, and never changes an inode a layer links', async () => {
    const old = await fresh('gen-old', before);
    const keptIndex = parseIndex(await fsp.readFile(path.join(old, 'index.jsonl'), 'utf8'));
    // a layer that hardlinked the old files
    const layer = path.join(tmp, 'layer');
    await fsp.mkdir(layer);
    for (const f of ['a/change', 'a/mode', 'a/keep']) await fsp.link(path.join(old, 'tree', f), path.join(layer, f.replace('/', '_')));
    const keepIno = (await fsp.stat(path.join(old, 'tree', 'a/keep'))).ino;

    const dir = path.join(tmp, 'gen-new');
    const entries = await plan(dir, after, keptIndex);
    expect(canUpdateInPlace(entries, keptIndex, true)).toBe(true);
    await fsp.mkdir(path.join(dir, 'tree'));
    await fsp.rename(path.join(old, 'tree'), path.join(dir, 'claimed'));
    const stats = await updateGeneration({ dir, claimedTree: path.join(dir, 'claimed'), keptIndex, entries, signal: new AbortController().signal });

    const expected = await fresh('gen-expected', after);
    expect(await listTree(path.join(dir, 'tree'))).toEqual(await listTree(path.join(expected, 'tree')));
    expect(await fsp.readFile(path.join(dir, 'index.jsonl'), 'utf8')).toBe(await fsp.readFile(path.join(expected, 'index.jsonl'), 'utf8'));
    expect((await fsp.readdir(dir)).sort()).toEqual(['index.jsonl', 'tree']);
    expect((await fsp.stat(path.join(dir, 'tree', 'a/keep'))).ino).toBe(keepIno);
    // the layer's links still hold the old content and metadata
    expect(await fsp.readFile(path.join(layer, 'a_change'), 'utf8')).toBe('old');
    expect((await fsp.stat(path.join(layer, 'a_mode'))).mode & 0o777).toBe(0o644);
    expect(stats).toEqual({ linked: 1, copied: 1, written: uid === 0 ? 5 : 4 });
  });

  it('is refused without root, and when a directory that stays loses an extended attribute', () => {
    const kept = new Map<string, IndexEntry>([['d', { ...entry({ path: 'd', type: 'DIR' }), xattrs: { 'user.a': Buffer.from('1') } }]]);
    const next = entry({ path: 'd', type: 'DIR' });
    const planned: PlannedEntry[] = [{ entry: next, change: compareEntry(kept.get('d'), next) }];
    expect(canUpdateInPlace(planned, kept, true)).toBe(false);
    expect(canUpdateInPlace([], new Map(), false)).toBe(false);
    expect(canUpdateInPlace([], new Map(), true)).toBe(true);
  });

  it('stops when its signal is aborted', async () => {
    const old = await fresh('gen-old', before);
    const keptIndex = parseIndex(await fsp.readFile(path.join(old, 'index.jsonl'), 'utf8'));
    const dir = path.join(tmp, 'gen-new');
    const entries = await plan(dir, after, keptIndex);
    await fsp.mkdir(path.join(dir, 'tree'));
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    await expect(updateGeneration({ dir, claimedTree: path.join(old, 'tree'), keptIndex, entries, signal: ac.signal })).rejects.toThrow('cancelled');
  });
});
