import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { BuildError } from '../../../solver/build-error';
import { childFilter } from '../../../store/child-filter';
import { compressionOfMediaType, createCompressor, createDecompressor, DEFAULT_COMPRESSION, layerCompression, layerMediaType } from '../../../store/layer-compression';
import { mapBounded } from '../../../store/map-bounded';

/** Everything `stream` gives for `input`; test inputs are small. */
async function through(stream: Duplex, input: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from([input]), stream, async (out: AsyncIterable<Buffer>) => {
    for await (const c of out) chunks.push(c);
  });
  return Buffer.concat(chunks);
}

const data = Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(256 * 1024, 'a')]);

describe('layer compressors', () => {
  it('gzip at the default level gives the bytes zlib gave before compression was a choice, where everything compresses', async () => {
    expect(DEFAULT_COMPRESSION).toEqual({ type: 'gzip', level: 6 });
    const text = Buffer.from('the same compressible tar as before\n'.repeat(20_000));
    expect((await through(createCompressor(DEFAULT_COMPRESSION), text)).equals(gzipSync(text))).toBe(true);
    // a stretch of random bytes is stored (createAdaptiveGzip): as large as zlib's, read the same
    const mixed = await through(createCompressor(DEFAULT_COMPRESSION), data);
    expect(mixed.length).toBeLessThanOrEqual(gzipSync(data).length * 1.001);
    expect((await through(createDecompressor('gzip'), mixed)).equals(data)).toBe(true);
  });

  it('gzip levels change the bytes, not the content', async () => {
    const fast = await through(createCompressor(layerCompression('gzip', 1)), data);
    const best = await through(createCompressor(layerCompression('gzip', 9)), data);
    expect(fast.equals(best)).toBe(false);
    for (const blob of [fast, best]) expect((await through(createDecompressor('gzip'), blob)).equals(data)).toBe(true);
  });

  it.each([0, 1, 3, 19, 22])('zstd level %i round-trips through the zstd program and its own decompressor', async (level) => {
    const blob = await through(createCompressor(layerCompression('zstd', level)), data);
    expect(blob.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe(true);
    expect(execFileSync('zstd', ['-dc'], { input: blob }).equals(data)).toBe(true);
    expect((await through(createDecompressor('zstd'), blob)).equals(data)).toBe(true);
    // level 19+ sets up a window of up to 128 MiB in the zstd program: slow on a loaded 2-core machine
  }, 30_000);

  it('zstd at the same level gives the same bytes every time', async () => {
    const a = await through(createCompressor(layerCompression('zstd')), data);
    const b = await through(createCompressor(layerCompression('zstd')), data);
    expect(a.equals(b)).toBe(true);
    expect(a.equals(await through(createCompressor(layerCompression('zstd', 19)), data))).toBe(false);
  });

  it('uncompressed passes the tar through', async () => {
    expect((await through(createCompressor(layerCompression('uncompressed')), data)).equals(data)).toBe(true);
  });

  it('names media types both ways', () => {
    expect(layerMediaType(layerCompression('zstd'))).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(layerMediaType(layerCompression('uncompressed'))).toBe('application/vnd.oci.image.layer.v1.tar');
    expect(layerMediaType(DEFAULT_COMPRESSION)).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(compressionOfMediaType('application/vnd.docker.image.rootfs.diff.tar')).toBe('uncompressed');
    expect(compressionOfMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe('gzip');
    expect(compressionOfMediaType('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip')).toBeUndefined();
  });
});

describe('childFilter', () => {
  it('fails, naming the program, when it is not installed', async () => {
    const err = await through(childFilter('buildd-no-such-zstd', [], 'compress a layer with zstd'), data).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).message).toBe('Cannot compress a layer with zstd: buildd-no-such-zstd is not installed (install the Debian package buildd-no-such-zstd)');
  });

  it('fails instead of ending when the program exits non-zero after some output', async () => {
    const filter = childFilter('sh', ['-c', 'head -c 1000; echo broken >&2; exit 3'], 'compress a layer with sh');
    const err = await through(filter, data).catch((e: unknown) => e);
    expect((err as Error).message).toBe('Cannot compress a layer with sh: sh exited with code 3: broken');
  });

  it('fails when the program is killed', async () => {
    const err = await through(childFilter('sh', ['-c', 'kill -9 $$'], 'decompress with sh'), data).catch((e: unknown) => e);
    expect((err as Error).message).toBe('Cannot decompress with sh: sh was killed by SIGKILL');
  });

  it('moves more than a pipe holds both ways (backpressure, no deadlock)', async () => {
    const big = randomBytes(8 * 1024 * 1024);
    expect((await through(childFilter('cat', [], 'copy with cat'), big)).equals(big)).toBe(true);
  });
});

describe('mapBounded', () => {
  it('runs at most `limit` at once and keeps the order of its items', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapBounded([5, 1, 4, 2, 3], 2, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setImmediate(resolve));
      running--;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
  });

  it('starts nothing after a failure and rejects once the running calls settled', async () => {
    const started: number[] = [];
    let settled = 0;
    const err = await mapBounded([1, 2, 3, 4], 2, async (n) => {
      started.push(n);
      await new Promise((resolve) => setImmediate(resolve));
      settled++;
      if (n === 1) throw new Error('one failed');
      return n;
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('one failed');
    expect(started).toEqual([1, 2]);
    expect(settled).toBe(2);
  });
});
