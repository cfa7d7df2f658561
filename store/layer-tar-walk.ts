import { createReadStream, lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { sharedFileThread, type FileThread } from './file-thread';
import { isWhiteout } from './overlay-whiteout';
import { encodeTarHeader, TAR_END, type TarHeaderFields } from './tar-header';
import { CAPABILITY_XATTR, readXattrsSync } from './xattrs';

/** What a walk tells its caller: how many entries it wrote, why it stopped early. */
export interface WalkState {
  entries: number;
  error?: unknown;
}

const OPAQUE_MARKER = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';
const BLOCK = 512;
/** Bytes gathered before a piece is handed on: the hash and the compressor see few, large pieces. */
const BATCH = 256 * 1024;
/** Entries walked between two turns of the event loop: a few milliseconds of work. */
const TURN = 128;
/** Files up to this size are read whole in one call, straight into the batch; larger ones stream. */
const SMALL_FILE = 64 * 1024;

/**
 * The tar of the tree at `root` in the layer tar's order and format: a directory before its
 * contents, names in byte order, hard links inside the tree kept, each entry with its mode,
 * owner, mtime and file capability. With `opaqueXattr` (an overlay upper dir), whiteouts become
 * `.wh.` entries and opaque directories get their `.wh..wh..opq` marker; without it (a merged
 * view) 0:0 character devices are devices.
 *
 * Metadata and attributes are read with synchronous calls, headers written straight into a
 * batch buffer that is handed on at about BATCH bytes: each call is a few microseconds of kernel
 * work on cached data, where a thread-pool round trip, an allocation and an async generator
 * step per entry cost several times that (20,000 files of 4 KiB: 0.88 s as one generator step per
 * header and content piece, see the commit). Small files' contents are read into their slots of
 * a batch by the file thread, while this thread walks on (at most AHEAD batches ahead). The
 * event loop gets a turn every TURN entries, so other builds are not held up. Directories are
 * walked with an explicit stack, not recursion.
 */
export async function* layerTarEntries(root: string, opaqueXattr: string | undefined, counter: WalkState, signal: AbortSignal, files: FileThread = sharedFileThread(), placing: TarPlacing = {}): AsyncGenerator<Buffer> {
  const prefix = placing.prefix ?? '';
  const out = new Batch();
  // batches in order, each ready once the file thread has read its small files into it
  const ready: Array<Promise<Buffer>> = [];
  const ship = (): void => {
    if (out.size === 0) return;
    const batch = out.take();
    const filled = batch.reads.files.length === 0 ? Promise.resolve(batch.bytes) : fill(files, batch);
    filled.catch(() => undefined);
    ready.push(filled);
  };
  const links = new Map<string, string>();
  const wanted = (n: string): boolean => n === CAPABILITY_XATTR || n === opaqueXattr;
  const stack: Array<{ rel: string; names: string[]; next: number }> = [{ rel: '', names: sortedNames(root), next: 0 }];
  let sinceTurn = 0;
  while (stack.length > 0) {
    const dir = stack[stack.length - 1] as { rel: string; names: string[]; next: number };
    const name = dir.names[dir.next++];
    if (name === undefined) {
      stack.pop();
      continue;
    }
    signal.throwIfAborted();
    if (++sinceTurn >= TURN) {
      sinceTurn = 0;
      ship();
      // the walk runs at most AHEAD batches ahead of the reads
      while (ready.length > AHEAD) yield await (ready.shift() as Promise<Buffer>);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const rel = dir.rel;
    const relPath = rel === '' ? name : `${rel}/${name}`;
    const abs = path.join(root, relPath);
    const st = lstatSync(abs);
    counter.entries++;
    if (opaqueXattr !== undefined && isWhiteout(st)) {
      // An overlay whiteout: the path was deleted in this layer.
      out.put(encodeTarHeader({ ...baseHeader(st), name: prefix + wh(rel, name), type: 'file', mode: 0, uid: 0, gid: 0 }));
    } else {
      const xattrs = readXattrsSync(abs, wanted);
      const opaque = opaqueXattr !== undefined && st.isDirectory() && xattrs.get(opaqueXattr)?.toString('latin1') === 'y';
      // "y" marks an opaque dir; newer kernels also write "x" (has whiteouts), which is not opaque.
      if (opaqueXattr !== undefined) xattrs.delete(opaqueXattr);
      const head = { ...baseHeader(st), xattrs };
      if (st.isDirectory()) {
        out.put(encodeTarHeader({ ...head, name: prefix + relPath + '/', type: 'directory' }));
        if (opaque) out.put(encodeTarHeader({ ...baseHeader(st), name: `${prefix}${relPath}/${OPAQUE_MARKER}`, type: 'file', mode: 0, uid: 0, gid: 0 }));
        stack.push({ rel: relPath, names: sortedNames(abs), next: 0 });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? links.get(key) : undefined;
        if (first !== undefined) {
          out.put(encodeTarHeader({ ...head, name: prefix + relPath, type: 'link', linkname: first }));
        } else {
          if (st.nlink > 1) links.set(key, prefix + relPath);
          out.put(encodeTarHeader({ ...head, name: prefix + relPath, type: 'file', size: st.size }));
          if (st.size <= SMALL_FILE) {
            out.reserve(abs, relPath, st.size);
          } else {
            ship();
            while (ready.length > 0) yield await (ready.shift() as Promise<Buffer>);
            yield* fileContent(abs, relPath, st.size, signal);
          }
          out.pad(st.size);
        }
      } else if (st.isSymbolicLink()) {
        out.put(encodeTarHeader({ ...head, name: prefix + relPath, type: 'symlink', linkname: readlinkSync(abs) }));
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const type = st.isCharacterDevice() ? 'character-device' : 'block-device';
        out.put(encodeTarHeader({ ...head, name: prefix + relPath, type, devmajor: major(st.rdev), devminor: minor(st.rdev) }));
      } else if (st.isFIFO()) {
        out.put(encodeTarHeader({ ...head, name: prefix + relPath, type: 'fifo' }));
      }
      // Sockets are not representable in a tar; like Docker, they are left out.
    }
    if (out.size >= BATCH) {
      ship();
      while (ready.length > AHEAD) yield await (ready.shift() as Promise<Buffer>);
    }
  }
  if (placing.end ?? true) out.put(TAR_END);
  ship();
  while (ready.length > 0) yield await (ready.shift() as Promise<Buffer>);
}

/** Where a walk's entries go in a bigger tar (BuildKit's per-platform folders of an export). */
export interface TarPlacing {
  /** put before every name, e.g. `linux_arm64/` (its own directory entry is the caller's) */
  prefix?: string;
  /** end the tar (default): false when more entries follow */
  end?: boolean;
}

/** Batches whose reads may be under way on the file thread while the walk goes on. */
const AHEAD = 3;

/** The batch with its small files read in by the file thread; a file whose size changed since its stat fails it. */
async function fill(files: FileThread, batch: TakenBatch): Promise<Buffer> {
  // the bytes' buffer moves to the thread and back: what this Buffer says is gone once it has
  const length = batch.bytes.length;
  const { buffer, got } = await files.readFiles(batch.bytes.buffer as ArrayBuffer, batch.reads.files, batch.reads.offsets, batch.reads.sizes);
  got.forEach((n, i) => {
    // As a streamed file: one that grew meanwhile is cut at the promised size, one that shrank fails.
    if (n < (batch.reads.sizes[i] as number)) throw changedSize(batch.reads.names[i] as string);
  });
  return Buffer.from(buffer, 0, length);
}

/** Small files whose content the file thread reads into a batch: path, offset, size, name in the layer. */
interface BatchReads {
  files: string[];
  offsets: number[];
  sizes: number[];
  names: string[];
}

/** A batch handed on: its bytes (in an ArrayBuffer of their own) and the reads that fill its slots. */
interface TakenBatch {
  bytes: Buffer;
  reads: BatchReads;
}

/**
 * The bytes of the tar being made, in one buffer that is handed on whole and then replaced (the
 * consumer may keep what it was given: a compressor queues its input), with a slot for the
 * content of each small file, which the file thread reads in.
 */
class Batch {
  private buf = newBuffer(BATCH + SMALL_FILE + BLOCK);
  private reads: BatchReads = { files: [], offsets: [], sizes: [], names: [] };
  size = 0;

  put(bytes: Buffer): void {
    this.room(bytes.length);
    bytes.copy(this.buf, this.size);
    this.size += bytes.length;
  }

  /** Zero bytes that fill content of `size` bytes up to a whole block. */
  pad(size: number): void {
    const rest = size % BLOCK;
    if (rest === 0) return;
    this.room(BLOCK - rest);
    this.buf.fill(0, this.size, this.size + BLOCK - rest);
    this.size += BLOCK - rest;
  }

  /** A slot for a small regular file's content, read in later (see fill). */
  reserve(abs: string, relPath: string, size: number): void {
    if (size === 0) return;
    this.room(size);
    this.reads.files.push(abs);
    this.reads.offsets.push(this.size);
    this.reads.sizes.push(size);
    this.reads.names.push(relPath);
    this.size += size;
  }

  take(): TakenBatch {
    const taken = { bytes: this.buf.subarray(0, this.size), reads: this.reads };
    this.buf = newBuffer(BATCH + SMALL_FILE + BLOCK);
    this.reads = { files: [], offsets: [], sizes: [], names: [] };
    this.size = 0;
    return taken;
  }

  /** Makes `n` bytes of room, in a larger buffer when the batch is already past its size (slots keep their offsets). */
  private room(n: number): void {
    if (this.size + n <= this.buf.length) return;
    const bigger = newBuffer(Math.max(this.buf.length * 2, this.size + n));
    this.buf.copy(bigger, 0, 0, this.size);
    this.buf = bigger;
  }
}

/** A buffer over an ArrayBuffer of its own, from its start: it can be moved to the file thread and back. */
function newBuffer(size: number): Buffer {
  return Buffer.from(new ArrayBuffer(size));
}

function sortedNames(dir: string): string[] {
  return readdirSync(dir).sort(compareBytes);
}

function changedSize(name: string): BuildError {
  return new BuildError('failed-precondition', `Cannot add ${name} to the layer: it changed size while being read`);
}

function baseHeader(st: Stats): Omit<TarHeaderFields, 'name' | 'type'> {
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtime: Math.floor(st.mtimeMs / 1000) };
}

function wh(rel: string, name: string): string {
  return rel === '' ? WHITEOUT_PREFIX + name : `${rel}/${WHITEOUT_PREFIX}${name}`;
}

/**
 * The pieces a large file is read in: 64 KiB (the stream's default) made 768 thread-pool round
 * trips and hash updates of a 48 MiB file; 1 MiB makes 48, and still bounds what is in memory.
 */
const BIG_FILE_CHUNK = 1024 * 1024;

/** Exactly `size` bytes of the file: the header already promised them. */
async function* fileContent(abs: string, name: string, size: number, signal: AbortSignal): AsyncGenerator<Buffer> {
  let written = 0;
  for await (const chunk of createReadStream(abs, { signal, highWaterMark: BIG_FILE_CHUNK }) as AsyncIterable<Buffer>) {
    // A file that grew meanwhile is cut at the promised size, one that shrank fails below.
    const part = written + chunk.length > size ? chunk.subarray(0, size - written) : chunk;
    written += part.length;
    if (part.length > 0) yield part;
  }
  if (written !== size) throw changedSize(name);
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function major(dev: number): number {
  return ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
}

function minor(dev: number): number {
  return (dev & 0xff) | ((dev >> 12) & 0xfff00);
}
