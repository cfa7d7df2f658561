import { promises as fsp } from 'node:fs';
import { gzipSync } from 'node:zlib';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { HistoryLogWriter, readHistoryLog } from '../../../../buildd/history/history-log';
import { HistoryStore, DEFAULT_HISTORY_LIMITS } from '../../../../buildd/history/history-store';
import type { ProgressEvent } from '../../../../buildd/builder';
import { MetaDb } from '../../../../store/meta-db';

const log = pino({ level: 'silent' });

async function readAll(file: string): Promise<ProgressEvent[]> {
  const out: ProgressEvent[] = [];
  for await (const ev of readHistoryLog(file)) out.push(ev);
  return out;
}

describe('history log', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-history-log-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('gives back every event in order, step output as bytes with the time it was written', async () => {
    const w = new HistoryLogWriter(path.join(dir, 'a.jsonl.gz'));
    const events: ProgressEvent[] = [
      { type: 'vertex', digest: 'd', name: '[1/1] RUN x', started: 5, cached: false },
      { type: 'log', vertex: 'd', stream: 2, data: Buffer.from([0, 1, 255]) },
      { type: 'warning', message: 'careful', range: { file: 'Dockerfile', startLine: 1, endLine: 1 } },
      { type: 'vertex', digest: 'd', name: '[1/1] RUN x', started: 5, completed: 9, cached: false, cacheMiss: 'its command changed' },
    ];
    for (const ev of events) w.write(ev);
    expect(await w.close()).toEqual({ bytes: expect.any(Number), truncated: false });
    const back = await readAll(path.join(dir, 'a.jsonl.gz'));
    expect(back).toHaveLength(4);
    expect(back[1]).toMatchObject({ type: 'log', vertex: 'd', stream: 2, data: Buffer.from([0, 1, 255]), at: expect.any(Number) });
    expect([back[0], back[2], back[3]]).toEqual([events[0], events[2], events[3]]);
  });

  it('drops step output past its bound, and says so, but keeps the steps', async () => {
    const w = new HistoryLogWriter(path.join(dir, 'b.jsonl.gz'), 1000);
    for (let i = 0; i < 50; i++) w.write({ type: 'log', vertex: 'd', stream: 1, data: Buffer.alloc(100, 'x') });
    w.write({ type: 'vertex', digest: 'd', name: 'n', started: 1, completed: 2, cached: false });
    const closed = await w.close();
    expect(closed.truncated).toBe(true);
    expect(closed.bytes).toBeLessThanOrEqual(2000);
    const back = await readAll(path.join(dir, 'b.jsonl.gz'));
    expect(back.filter((e) => e.type === 'log').length).toBeLessThan(10);
    expect(back.at(-1)).toMatchObject({ type: 'vertex', completed: 2 });
  });

  it('reads what a file cut short holds, and refuses a damaged line naming it', async () => {
    const whole = gzipSync(Buffer.from('{"type":"warning","message":"one"}\n{"type":"warning","message":"two"}\n'));
    await fsp.writeFile(path.join(dir, 'cut.gz'), whole.subarray(0, whole.length - 12));
    const cut = await readAll(path.join(dir, 'cut.gz'));
    expect(cut.length).toBeLessThanOrEqual(2);
    await fsp.writeFile(path.join(dir, 'empty.gz'), '');
    expect(await readAll(path.join(dir, 'empty.gz'))).toEqual([]);
    await fsp.writeFile(path.join(dir, 'bad.gz'), gzipSync(Buffer.from('{"type":"warning","message":"ok"}\n{"type":"vertex"}\n')));
    await expect(readAll(path.join(dir, 'bad.gz'))).rejects.toThrow(/bad\.gz: line 2 is damaged/);
    await fsp.writeFile(path.join(dir, 'plain.gz'), 'not gzip at all');
    await expect(readAll(path.join(dir, 'plain.gz'))).rejects.toThrow(/Cannot read the build history log/);
  });
});

describe('HistoryStore', () => {
  let root: string;
  let meta: MetaDb;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-history-'));
    meta = MetaDb.open(root);
  });
  afterEach(async () => {
    meta.close();
    await fsp.rm(root, { recursive: true, force: true });
  });

  const start = (ref: string) => ({ ref, frontend: 'dockerfile.v0', frontendAttrs: { target: 't' }, outputs: [{ type: 'image', attrs: { name: `x/${ref}` } }] });

  it('records a build from start to end with its step tally, newest first', async () => {
    const store = await HistoryStore.open(meta, path.join(root, 'history'), DEFAULT_HISTORY_LIMITS, log);
    const a = store.begin(start('a'));
    expect(store.list()[0]).toMatchObject({ ref: 'a', status: 'running' });
    a.progress({ type: 'vertex', digest: '1', name: '[1/3] FROM b', started: 1, completed: 1, cached: true });
    a.progress({ type: 'vertex', digest: '2', name: '[2/3] RUN x', started: 1, cached: false });
    a.progress({ type: 'vertex', digest: '2', name: '[2/3] RUN x', started: 1, completed: 3, cached: false });
    a.progress({ type: 'vertex', digest: 'e', name: 'exporting to image', started: 1, completed: 3, cached: false });
    await a.end('completed', undefined, { 'containerimage.digest': 'sha256:1' });
    await a.end('failed', 'ignored');
    const b = store.begin(start('b'));
    await b.end('failed', 'exit code: 1');
    const [rb, ra] = store.list();
    expect(ra).toMatchObject({ ref: 'a', status: 'completed', steps: 2, cachedSteps: 1, frontendAttrs: { target: 't' }, outputs: [{ type: 'image', attrs: { name: 'x/a' } }], exporterResponse: { 'containerimage.digest': 'sha256:1' } });
    expect(rb).toMatchObject({ ref: 'b', status: 'failed', error: 'exit code: 1' });
    expect(store.logFile('a')).toBe(path.join(root, 'history', 'a.jsonl.gz'));
    expect(store.logFile('nope')).toBeUndefined();
  });

  it('at open: a running row becomes interrupted, a log file without a row goes', async () => {
    const first = await HistoryStore.open(meta, path.join(root, 'history'), DEFAULT_HISTORY_LIMITS, log);
    first.begin(start('crashed'));
    await fsp.appendFile(path.join(root, 'history', 'crashed.jsonl.gz'), Buffer.alloc(100));
    await fsp.writeFile(path.join(root, 'history', 'stray.jsonl.gz'), 'x');
    const again = await HistoryStore.open(meta, path.join(root, 'history'), DEFAULT_HISTORY_LIMITS, log);
    // its log counts towards maxBytes as it is on disk
    expect(again.list()).toEqual([expect.objectContaining({ ref: 'crashed', status: 'interrupted', error: 'the daemon stopped before the build ended', logBytes: 100 })]);
    expect(await fsp.readdir(path.join(root, 'history'))).toEqual(['crashed.jsonl.gz']);
  });

  it('trims by count, by age and by log bytes, oldest first, never a running build', async () => {
    const store = await HistoryStore.open(meta, path.join(root, 'history'), { maxEntries: 2, maxAgeMs: 3_600_000, maxBytes: 1_000_000 }, log);
    const running = store.begin(start('running'));
    for (const ref of ['one', 'two', 'three']) await store.begin(start(ref)).end('completed');
    expect(store.list().map((r) => r.ref).sort()).toEqual(['running', 'three', 'two']);
    await store.trim(Date.now() + 2 * 3_600_000);
    expect(store.list().map((r) => r.ref)).toEqual(['running']);
    expect(await fsp.readdir(path.join(root, 'history'))).toEqual(['running.jsonl.gz']);
    await running.end('cancelled');

    const small = await HistoryStore.open(meta, path.join(root, 'history'), { maxEntries: 50, maxAgeMs: 3_600_000, maxBytes: 200 }, log);
    for (const ref of ['p', 'q']) {
      const h = small.begin(start(ref));
      h.progress({ type: 'log', vertex: 'v', stream: 1, data: Buffer.alloc(60, 'y') });
      await h.end('completed');
    }
    // each log is about 140 bytes: the newest fits, everything older goes
    expect(small.list().map((r) => r.ref)).toEqual(['q']);
  });
});
