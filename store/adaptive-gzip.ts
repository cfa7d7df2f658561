import { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';
import { drained } from './stream-drained';

/** The uncompressed stream is judged in blocks of this size, at fixed offsets. */
const BLOCK = 64 * 1024;
/** How much of each end of a block is looked at. */
const SAMPLE = 4 * 1024;
/** Bits per byte of a sample whose bytes Huffman coding cannot shrink (uniform random: about 7.955 over 4 KiB). */
const MIN_ENTROPY_BITS = 7.9;
/** Repeated 4-byte strings a sample may hold and still be one LZ77 cannot shrink (random: about none). */
const MAX_MATCHES = SAMPLE / 256;
const MATCH_HASH_BITS = 12;
/** The largest stored deflate block (RFC 1951: LEN is 16 bits). */
const MAX_STORED = 65535;
/** A gzip member header as zlib writes it at its fastest level: no name, no time, OS Unix. */
const STORED_MEMBER_HEADER = Buffer.from('1f8b0800000000000403', 'hex');
/** The empty final stored block that closes a member's deflate stream. */
const FINAL_EMPTY_STORED = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);

const crc32: ((data: Buffer, value?: number) => number) | undefined = (zlib as { crc32?: (data: Buffer, value?: number) => number }).crc32;

/**
 * gzip at `level` that spends no effort where none can pay: the tar is cut into 64 KiB blocks at
 * fixed offsets, and each run of blocks that deflate cannot shrink (random data, compressed
 * archives, media: judged on both ends of the block, see incompressible) becomes a gzip member of stored deflate blocks; the runs between
 * are members compressed by zlib at `level`. zlib would store such blocks too, after searching
 * them for matches: the blob is as large, and a layer of 48 MiB of random data takes tens of
 * milliseconds instead of seconds of CPU. A blob of several members is ordinary gzip (RFC 1952
 * allows it; Go's, zlib's, Node's and GNU gzip's readers read it whole, as they read pigz's and
 * estargz's output).
 *
 * The output is a function of the input bytes alone, never of how they were written in
 * pieces: the same tar always gives the same blob. Where Node lacks zlib.crc32 this is plain
 * zlib gzip. Lifecycle: as createGzip's stream: write the tar, end it, read the blob; destroy
 * to stop early.
 */
export function createAdaptiveGzip(level: number, chunkSize: number): Duplex {
  if (crc32 === undefined || level === 0) return zlib.createGzip({ level, chunkSize });
  const crc = crc32;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  /** the zlib member being written, during a run of compressible blocks */
  let member: zlib.Gzip | undefined;
  let memberDone: Promise<void> | undefined;
  /** the stored member being written, during a run of incompressible blocks */
  let stored: { crc: number; size: number } | undefined;
  let resumeMember: (() => void) | undefined;
  /** a stored run waits here while the reader is behind */
  let resumeStored: (() => void) | undefined;

  const duplex = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      writeBlocks(false).then(() => cb(), cb);
    },
    final(cb) {
      writeBlocks(true)
        .then(() => closeMember())
        .then(() => {
          closeStored();
          duplex.push(null);
          cb();
        }, cb);
    },
    read() {
      resumeMember?.();
      const stored = resumeStored;
      resumeStored = undefined;
      stored?.();
    },
    destroy(err, cb) {
      member?.destroy();
      // a write waiting for the reader ends now (writeBlock sees the stream destroyed)
      const stored = resumeStored;
      resumeStored = undefined;
      stored?.();
      cb(err);
    },
  });

  const openMember = (): zlib.Gzip => {
    const gz = zlib.createGzip({ level, chunkSize });
    gz.on('data', (data: Buffer) => {
      if (!duplex.push(data)) {
        gz.pause();
        resumeMember = () => {
          resumeMember = undefined;
          gz.resume();
        };
      }
    });
    memberDone = new Promise<void>((resolve, reject) => {
      gz.once('end', resolve);
      gz.once('error', reject);
    });
    return gz;
  };

  const closeMember = async (): Promise<void> => {
    if (!member) return;
    const done = memberDone;
    member.end();
    member = undefined;
    await done;
  };

  const closeStored = (): void => {
    if (!stored) return;
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(stored.crc >>> 0, 0);
    trailer.writeUInt32LE(stored.size % 0x1_0000_0000, 4);
    duplex.push(Buffer.concat([FINAL_EMPTY_STORED, trailer]));
    stored = undefined;
  };

  const writeBlock = async (block: Buffer): Promise<void> => {
    if (duplex.destroyed) throw new Error('Cannot compress: the stream was destroyed');
    if (incompressible(block)) {
      await closeMember();
      if (!stored) {
        stored = { crc: 0, size: 0 };
        duplex.push(STORED_MEMBER_HEADER);
      }
      stored.crc = crc(block, stored.crc);
      stored.size += block.length;
      let more = true;
      for (let at = 0; at < block.length; at += MAX_STORED) {
        const piece = block.subarray(at, at + MAX_STORED);
        const head = Buffer.alloc(5);
        head.writeUInt16LE(piece.length, 1);
        head.writeUInt16LE(~piece.length & 0xffff, 3);
        more = duplex.push(head) && more;
        more = duplex.push(piece) && more;
      }
      // the reader's pace: memory must not follow the layer's size
      if (!more) await new Promise<void>((resolve) => (resumeStored = resolve));
      return;
    }
    closeStored();
    member ??= openMember();
    if (!member.write(block)) {
      await drained(member);
      // a member that failed rejects memberDone with its error
      if (member.destroyed) await memberDone;
    }
  };

  const writeBlocks = async (final: boolean): Promise<void> => {
    while (pendingBytes >= BLOCK || (final && pendingBytes > 0)) {
      await writeBlock(takeBlock());
    }
  };

  /**
   * The next block of the pending input: a view of one written chunk where it holds the whole
   * block, else its pieces joined (only a block that straddles two writes is copied). Written
   * chunks are not copied: as every producer here, the writer must not reuse them.
   */
  const takeBlock = (): Buffer => {
    const want = Math.min(BLOCK, pendingBytes);
    const first = pending[0];
    let block: Buffer;
    if (first.length >= want) {
      block = first.subarray(0, want);
      if (first.length === want) pending.shift();
      else pending[0] = first.subarray(want);
    } else {
      const parts: Buffer[] = [];
      let got = 0;
      while (got < want) {
        const head = pending[0];
        const take = Math.min(head.length, want - got);
        parts.push(head.subarray(0, take));
        got += take;
        if (take === head.length) pending.shift();
        else pending[0] = head.subarray(take);
      }
      block = Buffer.concat(parts, want);
    }
    pendingBytes -= want;
    return block;
  };

  return duplex;
}

/**
 * Whether deflate can gain nothing on the block, judged on its first and its last 4 KiB (a
 * block where random data meets text is compressed whole, so the text keeps its compression),
 * each in two cheap passes (a trial deflate cost more than storing): its bytes are spread
 * evenly (order-0 entropy near 8 bits, so Huffman codes gain nothing) and almost no 4-byte string
 * repeats (so LZ77 matches gain nothing). Random data, compressed archives and media pass; text,
 * code, binaries and patterned data fail. Only whole blocks are judged: the last, shorter one is
 * compressed.
 */
function incompressible(block: Buffer): boolean {
  if (block.length < BLOCK) return false;
  return incompressibleSample(block.subarray(0, SAMPLE)) && incompressibleSample(block.subarray(BLOCK - SAMPLE));
}

function incompressibleSample(sample: Buffer): boolean {
  const counts = new Uint32Array(256);
  for (let i = 0; i < sample.length; i++) counts[sample[i]]++;
  let entropy = 0;
  for (const c of counts) {
    if (c === 0) continue;
    const p = c / sample.length;
    entropy -= p * Math.log2(p);
  }
  if (entropy < MIN_ENTROPY_BITS) return false;
  const last = new Int32Array(1 << MATCH_HASH_BITS).fill(-1);
  let matches = 0;
  for (let i = 0; i + 4 <= sample.length; i++) {
    const v = (sample[i] | (sample[i + 1] << 8) | (sample[i + 2] << 16) | (sample[i + 3] << 24)) >>> 0;
    const k = Math.imul(v, 0x9e3779b1) >>> (32 - MATCH_HASH_BITS);
    const j = last[k];
    last[k] = i;
    if (j >= 0 && sample[j] === sample[i] && sample[j + 1] === sample[i + 1] && sample[j + 2] === sample[i + 2] && sample[j + 3] === sample[i + 3]) {
      if (++matches > MAX_MATCHES) return false;
    }
  }
  return true;
}
