import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileThread, FileThreadError } from '../../../store/file-thread';

describe('FileThread', () => {
  let tmp: string;
  let writer: FileThread;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'staging-'));
    writer = new FileThread();
  });
  afterEach(async () => {
    await writer.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('writes every file whole, in batches, with the owner, mode and times asked for', async () => {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 500; i++) {
      const content = Buffer.alloc(i * 37, i % 256);
      writes.push(writer.write(path.join(tmp, `f${i}`), content, i % 2 === 0 ? { uid, gid, mode: 0o751, time: 1_500_000_000.25 } : undefined));
    }
    // one larger than a batch's bytes
    writes.push(writer.write(path.join(tmp, 'big'), Buffer.alloc(1024 * 1024, 7)));
    await Promise.all(writes);
    for (const i of [0, 1, 63, 64, 65, 499]) {
      const f = path.join(tmp, `f${i}`);
      expect(await fsp.readFile(f)).toEqual(Buffer.alloc(i * 37, i % 256));
      const st = await fsp.stat(f);
      if (i % 2 === 0) {
        expect(st.mode & 0o7777).toBe(0o751);
        expect(st.mtimeMs).toBe(1_500_000_000_250);
      } else {
        expect(st.mode & 0o7777).toBe(0o600);
      }
    }
    expect((await fsp.stat(path.join(tmp, 'big'))).size).toBe(1024 * 1024);
  });

  it('fails the write of a file that exists or whose path ends in a symlink, and only that write', async () => {
    await fsp.writeFile(path.join(tmp, 'there'), 'old');
    await fsp.symlink('/etc/passwd', path.join(tmp, 'link'));
    const results = await Promise.allSettled([
      writer.write(path.join(tmp, 'a'), Buffer.from('a')),
      writer.write(path.join(tmp, 'there'), Buffer.from('new')),
      writer.write(path.join(tmp, 'link'), Buffer.from('evil')),
      writer.write(path.join(tmp, 'missing-dir', 'x'), Buffer.from('x')),
      writer.write(path.join(tmp, 'b'), Buffer.from('b')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled']);
    const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as FileThreadError] : []));
    expect(reasons.every((r) => r instanceof FileThreadError)).toBe(true);
    expect(reasons.map((r) => [path.basename(r.file), r.code])).toEqual([
      ['there', 'EEXIST'],
      ['link', 'EEXIST'],
      ['x', 'ENOENT'],
    ]);
    expect(await fsp.readFile(path.join(tmp, 'there'), 'utf8')).toBe('old');
    expect(await fsp.readFile('/etc/passwd', 'utf8')).not.toContain('evil');
  });

  it('makes hard links in order with writes, failing only a link whose path is taken', async () => {
    await writer.write(path.join(tmp, 'src'), Buffer.from('shared'));
    const results = await Promise.allSettled([
      writer.link(path.join(tmp, 'src'), path.join(tmp, 'l1')),
      writer.link(path.join(tmp, 'src'), path.join(tmp, 'src')),
      writer.write(path.join(tmp, 'w'), Buffer.from('w')),
      writer.link(path.join(tmp, 'w'), path.join(tmp, 'l2')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'EEXIST' });
    expect((await fsp.stat(path.join(tmp, 'l1'))).ino).toBe((await fsp.stat(path.join(tmp, 'src'))).ino);
    expect(await fsp.readFile(path.join(tmp, 'l2'), 'utf8')).toBe('w');
  });

  it('reads small files into their slots of a buffer it hands back, telling a grown or shrunk file, never following a link', async () => {
    await fsp.writeFile(path.join(tmp, 'a'), 'aaaa');
    await fsp.writeFile(path.join(tmp, 'b'), 'bbbbbbbb');
    await fsp.writeFile(path.join(tmp, 'short'), 'ss');
    const buffer = new ArrayBuffer(32);
    const { buffer: back, got } = await writer.readFiles(buffer, [path.join(tmp, 'a'), path.join(tmp, 'b'), path.join(tmp, 'short')], [0, 8, 20], [4, 6, 4]);
    expect(buffer.byteLength).toBe(0); // moved to the thread
    const bytes = Buffer.from(back);
    expect(bytes.subarray(0, 4).toString()).toBe('aaaa');
    // grown: the promised bytes, and one more seen
    expect(bytes.subarray(8, 14).toString()).toBe('bbbbbb');
    expect(bytes[14]).toBe(0);
    expect(got).toEqual([4, 7, 2]);
    await fsp.symlink(path.join(tmp, 'a'), path.join(tmp, 'link'));
    await expect(writer.readFiles(new ArrayBuffer(8), [path.join(tmp, 'link')], [0], [4])).rejects.toMatchObject({ code: 'ELOOP' });
  });

  it('fails what is still queued when it is closed, and starts a new thread for the next write', async () => {
    const queued = writer.write(path.join(tmp, 'q'), Buffer.from('q'));
    await writer.close();
    await expect(queued).rejects.toThrow('stopped');
    await writer.write(path.join(tmp, 'after'), Buffer.from('after'));
    expect(await fsp.readFile(path.join(tmp, 'after'), 'utf8')).toBe('after');
  });
});
