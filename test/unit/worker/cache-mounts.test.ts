import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CacheMountRequest, CacheMounts } from '../../../buildd/worker/mounts/cache-mounts';
import { BuildError } from '../../../solver/build-error';

describe('CacheMounts (the directories behind RUN --mount=type=cache)', () => {
  let tmp: string;
  let root: string;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cache-mounts-'));
    root = path.join(tmp, 'cache-mounts');
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const req = (sharing: CacheMountRequest['sharing'], extra: Partial<CacheMountRequest> = {}): CacheMountRequest => ({
    id: 'c', sharing, seedKey: 'scratch', step: 'test', signal: new AbortController().signal, ...extra,
  });
  /** whether a promise has settled, after everything already queued has run */
  async function settled(p: Promise<unknown>): Promise<boolean> {
    let done = false;
    void p.then(() => (done = true), () => (done = true));
    for (let i = 0; i < 50; i++) await new Promise<void>((r) => setImmediate(r));
    return done;
  }

  test('content persists across leases and across a reopen (a daemon restart); a new cache starts empty, 0755', async () => {
    const mounts = await CacheMounts.open(root);
    const first = await mounts.acquire(req('shared'));
    expect((await fsp.stat(first.path)).mode & 0o7777).toBe(0o755);
    expect(await fsp.readdir(first.path)).toEqual([]);
    await fsp.writeFile(path.join(first.path, 'kept'), 'yes');
    first.release();
    const again = await (await CacheMounts.open(root)).acquire(req('shared'));
    expect(again.path).toBe(first.path);
    expect(await fsp.readFile(path.join(again.path, 'kept'), 'utf8')).toBe('yes');
    again.release();
  });

  test('shared: two users at once get the same directory', async () => {
    const mounts = await CacheMounts.open(root);
    const a = await mounts.acquire(req('shared'));
    const b = await mounts.acquire(req('shared'));
    expect(b.path).toBe(a.path);
    a.release();
    b.release();
  });

  test('locked: the second user waits until the first releases, then gets the same directory', async () => {
    const mounts = await CacheMounts.open(root);
    const a = await mounts.acquire(req('locked'));
    const waiting = mounts.acquire(req('locked'));
    expect(await settled(waiting)).toBe(false);
    a.release();
    const b = await waiting;
    expect(b.path).toBe(a.path);
    b.release();
  });

  test('locked: a waiting user is cancelled by its signal', async () => {
    const mounts = await CacheMounts.open(root);
    const a = await mounts.acquire(req('locked'));
    const abort = new AbortController();
    const waiting = mounts.acquire(req('locked', { signal: abort.signal }));
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot mount cache c: the step was cancelled' });
    await expect(waiting).rejects.toBeInstanceOf(BuildError);
    a.release();
  });

  test('private: a concurrent user gets another directory; a later one reuses a free one', async () => {
    const mounts = await CacheMounts.open(root);
    const a = await mounts.acquire(req('private'));
    const b = await mounts.acquire(req('private'));
    expect(b.path).not.toBe(a.path);
    a.release();
    const c = await mounts.acquire(req('private'));
    expect(c.path).toBe(a.path);
    b.release();
    c.release();
  });

  test('a seeded cache starts as a copy of the seed with its root owner and mode; another seed is another cache', async () => {
    const seedDir = path.join(tmp, 'seed');
    await fsp.mkdir(path.join(seedDir, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(seedDir, 'sub', 'f'), 'seeded');
    await fsp.chmod(seedDir, 0o700);
    let released = 0;
    const seed = async (): Promise<{ dir: string; release(): Promise<void> }> => ({ dir: seedDir, release: async () => void released++ });
    const mounts = await CacheMounts.open(root);
    const a = await mounts.acquire(req('shared', { seedKey: 'seed-1', seed }));
    expect(await fsp.readFile(path.join(a.path, 'sub', 'f'), 'utf8')).toBe('seeded');
    expect((await fsp.stat(a.path)).mode & 0o7777).toBe(0o700);
    expect(released).toBe(1);
    await fsp.writeFile(path.join(a.path, 'sub', 'f'), 'changed by a step');
    a.release();
    // an existing cache is never seeded again
    const b = await mounts.acquire(req('shared', { seedKey: 'seed-1', seed }));
    expect(await fsp.readFile(path.join(b.path, 'sub', 'f'), 'utf8')).toBe('changed by a step');
    expect(released).toBe(1);
    b.release();
    const other = await mounts.acquire(req('shared', { seedKey: 'scratch' }));
    expect(other.path).not.toBe(a.path);
    other.release();
  });

  test('a half-made instance from a crash is removed on open', async () => {
    const mounts = await CacheMounts.open(root);
    const a = await mounts.acquire(req('shared'));
    a.release();
    const leftover = path.join(path.dirname(a.path), 'tmp-deadbeef');
    await fsp.mkdir(leftover);
    await CacheMounts.open(root);
    await expect(fsp.stat(leftover)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
