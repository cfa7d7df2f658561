import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { layerTarEntries, type WalkState } from '../../../store/layer-tar-walk';

interface Entry {
  name: string;
  type: string;
  size: number;
  linkname?: string;
  sha?: string;
}

async function readTar(chunks: Buffer[]): Promise<Entry[]> {
  const out: Entry[] = [];
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (h, stream, next) => {
      const hash = createHash('sha256');
      stream.on('data', (c: unknown) => hash.update(c as Buffer));
      stream.on('end', () => {
        out.push({ name: h.name, type: h.type ?? '', size: h.size ?? 0, ...(h.linkname ? { linkname: h.linkname } : {}), ...(h.type === 'file' ? { sha: hash.digest('hex') } : {}) });
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  Readable.from(chunks).pipe(extract);
  await done;
  return out;
}

async function walk(root: string): Promise<{ chunks: Buffer[]; state: WalkState }> {
  const state: WalkState = { entries: 0 };
  const chunks: Buffer[] = [];
  for await (const c of layerTarEntries(root, undefined, state, new AbortController().signal)) chunks.push(c);
  return { chunks, state };
}

describe('layerTarEntries', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'layer-walk-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('writes every entry in byte order, small files read into batches and large ones streamed, hard links kept', async () => {
    const sizes = [0, 1, 511, 512, 4096, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024];
    const want: Record<string, string> = {};
    await fsp.mkdir(path.join(dir, 'b/deep/er'), { recursive: true });
    for (const size of sizes) {
      const data = Buffer.alloc(size, size % 251);
      await fsp.writeFile(path.join(dir, `b/f${size}`), data);
      want[`b/f${size}`] = createHash('sha256').update(data).digest('hex');
    }
    // enough small files to cross several batches
    for (let i = 0; i < 300; i++) await fsp.writeFile(path.join(dir, `b/deep/er/s${String(i).padStart(3, '0')}`), Buffer.alloc(3000, i));
    await fsp.writeFile(path.join(dir, 'a'), 'first');
    await fsp.link(path.join(dir, 'a'), path.join(dir, 'c-link'));
    await fsp.symlink('/nowhere', path.join(dir, 'B-sym'));

    const { chunks, state } = await walk(dir);
    const entries = await readTar(chunks);
    const names = entries.map((e) => e.name);
    expect(names.slice(0, 3)).toEqual(['B-sym', 'a', 'b/']);
    expect(names.indexOf('b/deep/')).toBeLessThan(names.indexOf('b/deep/er/s000'));
    expect(names.filter((n) => n.startsWith('b/deep/er/s'))).toHaveLength(300);
    expect(names[names.length - 1]).toBe('c-link');
    expect(state.entries).toBe(entries.length);
    const byName = new Map(entries.map((e) => [e.name, e]));
    for (const [name, sha] of Object.entries(want)) expect(byName.get(name)?.sha).toBe(sha);
    expect(byName.get('c-link')).toMatchObject({ type: 'link', linkname: 'a' });
    expect(byName.get('B-sym')).toMatchObject({ type: 'symlink', linkname: '/nowhere' });
    // a few large pieces, not one per header and content
    expect(chunks.length).toBeLessThan(entries.length / 4);
    // whole blocks, ending with the two zero blocks
    const total = chunks.reduce((n, c) => n + c.length, 0);
    expect(total % 512).toBe(0);
    expect(Buffer.concat(chunks).subarray(total - 1024).every((b) => b === 0)).toBe(true);
  });

  it('gives the same bytes for the same tree, however it is read', async () => {
    await fsp.mkdir(path.join(dir, 'x'));
    for (let i = 0; i < 50; i++) await fsp.writeFile(path.join(dir, `x/${i}`), Buffer.alloc(i * 1000, i));
    const digest = async (): Promise<string> => createHash('sha256').update(Buffer.concat((await walk(dir)).chunks)).digest('hex');
    expect(await digest()).toBe(await digest());
  });

  it('stops when its signal is aborted', async () => {
    for (let i = 0; i < 400; i++) await fsp.writeFile(path.join(dir, `f${i}`), 'x');
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    const it = layerTarEntries(dir, undefined, { entries: 0 }, ac.signal);
    await expect(it.next()).rejects.toThrow('cancelled');
  });
});
