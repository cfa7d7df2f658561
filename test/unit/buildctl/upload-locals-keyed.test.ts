import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { loadControlApi } from '../../../buildd/api/load-proto';
import { FileRequestQueue } from '../../../buildctl/file-request-queue';
import { PreEncoded } from '../../../buildd/api/pre-encoded';
import { uploadLocals, type StartMessage } from '../../../buildctl/upload-locals';
import { waitFor } from '../../helpers/wait-for';

describe('uploadLocals with a keyed local', () => {
  let tmp: string;
  let ctx: string;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-upload-keyed-'));
    ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.writeFile(path.join(ctx, 'a'), 'aaa');
    await fsp.writeFile(path.join(ctx, 'b'), 'bbbb');
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const start: StartMessage = { frontend: 'f', frontend_attrs: {}, local_names: ['context'], exports: [], no_cache: false, entitlements: [], local_keys: { context: 'k' } };

  /** Runs the upload against a call that records what was written. */
  function upload(requests: FileRequestQueue) {
    const call = new PassThrough({ objectMode: true, highWaterMark: 1024 });
    const sent: Array<Record<string, unknown>> = [];
    // a listing is written encoded: decoded here as the daemon decodes it
    const decode = loadControlApi().service.Build?.requestDeserialize as (b: Buffer) => Record<string, unknown>;
    call.on('data', (m: Record<string, unknown>) => sent.push(m instanceof PreEncoded ? decode(Buffer.from(m.bytes)) : m));
    return { sent, done: uploadLocals(call, start, { context: ctx }, requests) };
  }

  it('lists without content, then sends only what is asked for, then locals_done', async () => {
    const requests = new FileRequestQueue();
    const { sent, done } = upload(requests);
    requests.push({ local: 'context', paths: ['b'], done: true });
    await expect(done).resolves.toEqual({ files: 1, bytes: 4 });
    const kinds = sent.map((m) => (typeof m.msg === 'string' ? m.msg : Object.keys(m)[0]));
    expect(kinds).toEqual(['start', 'listing', 'listing_done', 'file', 'data', 'locals_done']);
    expect(sent[1]).toMatchObject({ listing: { local: 'context', paths: ['a', 'b'], types: ['FILE', 'FILE'], sizes: [3, 4], uids: [0, 0], gids: [0, 0], link_targets: ['', ''], xattrs: [] } });
    expect(sent[3]).toEqual({ file: { local: 'context', path: 'b' } });
    expect((sent[4] as { data: { data: Buffer } }).data.data.toString()).toBe('bbbb');
  });

  it('fails when a file asked for changed after it was listed', async () => {
    const requests = new FileRequestQueue();
    const { sent, done } = upload(requests);
    // the listing is sent before any request is read: change the file, then ask for it
    await waitFor('the listing to be sent', async () => (sent.some((m) => 'listing_done' in m) ? true : undefined));
    await fsp.writeFile(path.join(ctx, 'a'), 'grown content');
    requests.push({ local: 'context', paths: ['a'], done: true });
    await expect(done).rejects.toThrow(/a: the file changed after it was listed/);
  });

  it('refuses a request for a path it did not list, or asked for twice', async () => {
    const q1 = new FileRequestQueue();
    const first = upload(q1);
    q1.push({ local: 'context', paths: ['../etc/passwd'], done: true });
    await expect(first.done).rejects.toThrow(/asked for context\/\.\.\/etc\/passwd, which was not listed/);
    const q2 = new FileRequestQueue();
    const second = upload(q2);
    q2.push({ local: 'context', paths: ['a'], done: false });
    q2.push({ local: 'context', paths: ['a'], done: true });
    await expect(second.done).rejects.toThrow(/context\/a, which was not listed or was sent already/);
  });
});
