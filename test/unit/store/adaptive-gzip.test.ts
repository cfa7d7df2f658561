import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { createAdaptiveGzip } from '../../../store/adaptive-gzip';

/** Text, 3 MiB of random data, text again, and a short random tail: runs of both kinds. */
const input = Buffer.concat([
  Buffer.from('a layer of text compresses well\n'.repeat(4000)),
  randomBytes(3 * 1024 * 1024 + 17),
  Buffer.from('then text again\n'.repeat(9000)),
  randomBytes(1000),
]);

async function compress(data: Buffer, piece: number, onChunk?: (readable: number) => void): Promise<Buffer> {
  const out: Buffer[] = [];
  const gz = createAdaptiveGzip(6, 256 * 1024);
  await pipeline(
    Readable.from((function* () {
      for (let i = 0; i < data.length; i += piece) yield data.subarray(i, i + piece);
    })()),
    gz,
    new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _e, cb) {
        out.push(chunk);
        onChunk?.(gz.readableLength);
        // a slow reader: the compressor must wait for it, not pile up what it made
        setImmediate(cb);
      },
    }),
  );
  return Buffer.concat(out);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('createAdaptiveGzip', () => {
  it('gives the same blob however the tar is cut into writes, and every gzip reader reads it whole', async () => {
    const blobs = await Promise.all([1 << 20, 4099, 65536].map((piece) => compress(input, piece)));
    expect(new Set(blobs.map(sha)).size).toBe(1);
    const blob = blobs[0];
    expect(gunzipSync(blob).equals(input)).toBe(true);
    // GNU gzip and Python's gzip module read every member, as Go's reader does
    expect(sha(execFileSync('gzip', ['-dc'], { input: blob, maxBuffer: 64 << 20 }))).toBe(sha(input));
    expect(execFileSync('python3', ['-c', 'import gzip,sys,hashlib; print(hashlib.sha256(gzip.decompress(sys.stdin.buffer.read())).hexdigest())'], { input: blob, maxBuffer: 1 << 20 }).toString().trim()).toBe(sha(input));
    // stored where nothing compresses: within 0.1% of zlib's own blob (member headers, block marks)
    expect(blob.length).toBeLessThanOrEqual(gzipSync(input).length * 1.001);
  });

  it("is zlib's blob, byte for byte, when everything compresses", async () => {
    const text = Buffer.from('0123456789 abcdef\n'.repeat(50_000));
    expect((await compress(text, 10_000)).equals(gzipSync(text, { level: 6 }))).toBe(true);
  });

  it('compresses data whose bytes are evenly spread but repeat (a counter), as zlib would', async () => {
    const counter = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < counter.length; i++) counter[i] = i & 0xff;
    const blob = await compress(counter, 65536);
    expect(gunzipSync(blob).equals(counter)).toBe(true);
    expect(blob.length).toBeLessThan(16 * 1024);
  });

  it('a stream destroyed while it waits for its reader stops, and its pending write ends', async () => {
    const gz = createAdaptiveGzip(6, 256 * 1024);
    const written = new Promise<unknown>((resolve) => gz.write(randomBytes(4 * 1024 * 1024), (err) => resolve(err)));
    // nobody reads: the stored run waits for the reader
    await new Promise((resolve) => setImmediate(resolve));
    gz.destroy();
    await expect(written).resolves.toBeTruthy();
  });

  it('keeps pace with a slow reader instead of holding what it compressed', async () => {
    let most = 0;
    await compress(randomBytes(8 * 1024 * 1024), 1 << 20, (readable) => (most = Math.max(most, readable)));
    expect(most).toBeLessThan(1024 * 1024);
  });
});
