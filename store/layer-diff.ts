import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { BuildError } from '../solver/build-error';
import type { ContentStore } from './content-store';
import type { Snapshotter } from './snapshotter';

/** A layer blob as an image manifest and config refer to it. */
export interface LayerDescriptor {
  /** digest of the gzip blob in the content store */
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar (the image config's rootfs.diff_ids) */
  diffId: string;
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip';
  /** true when the snapshot changed nothing (the tar has no entries) */
  empty: boolean;
}

/** What pack.entry takes: a name and whatever else the entry has. */
type TarHeader = Partial<tar.Header> & { name: string };

const EMPTY = Buffer.alloc(0);
const OPAQUE_MARKER = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';

/**
 * Turns the changes of snapshot `id` (its overlay upper dir) into an OCI layer in the content
 * store. The tar is written in sorted order (a directory before its contents, names in byte
 * order), with nothing taken from the clock, so the same upper dir gives the same digest.
 * Streamed: tar → sha256 (diffId) → gzip → content store, one file at a time.
 */
export async function diffToLayer(snapshotter: Snapshotter, id: string, contentStore: ContentStore, signal?: AbortSignal): Promise<LayerDescriptor> {
  const upper = await snapshotter.upperDir(id);
  const opaque = await opaqueDirs(upper, signal);
  const pack = tar.pack();
  // Stops the walker (and closes its open file) when the consuming side fails first.
  const stop = new AbortController();
  const walkSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const diffHash = createHash('sha256');
  let entries = 0;

  const writer = (async () => {
    const links = new Map<string, string>();
    const walk = async (rel: string): Promise<void> => {
      const names = (await fsp.readdir(path.join(upper, rel))).sort(compareBytes);
      for (const name of names) {
        walkSignal.throwIfAborted();
        const relPath = rel === '' ? name : `${rel}/${name}`;
        const abs = path.join(upper, relPath);
        const st = await fsp.lstat(abs);
        entries++;
        if (st.isCharacterDevice() && st.rdev === 0) {
          // An overlay whiteout: the path was deleted in this layer.
          await addEntry(pack, { ...baseHeader(st), name: wh(rel, name), type: 'file', mode: 0, uid: 0, gid: 0, size: 0 });
        } else if (st.isDirectory()) {
          await addEntry(pack, { ...baseHeader(st), name: relPath + '/', type: 'directory' });
          if (opaque.has(abs)) {
            await addEntry(pack, { ...baseHeader(st), name: `${relPath}/${OPAQUE_MARKER}`, type: 'file', mode: 0, uid: 0, gid: 0, size: 0 });
          }
          await walk(relPath);
        } else if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          const first = st.nlink > 1 ? links.get(key) : undefined;
          if (first !== undefined) {
            await addEntry(pack, { ...baseHeader(st), name: relPath, type: 'link', linkname: first, size: 0 });
            continue;
          }
          if (st.nlink > 1) links.set(key, relPath);
          await addFile(pack, { ...baseHeader(st), name: relPath, type: 'file', size: st.size }, abs, walkSignal);
        } else if (st.isSymbolicLink()) {
          await addEntry(pack, { ...baseHeader(st), name: relPath, type: 'symlink', linkname: await fsp.readlink(abs) });
        } else if (st.isCharacterDevice() || st.isBlockDevice()) {
          const type = st.isCharacterDevice() ? 'character-device' : 'block-device';
          await addEntry(pack, { ...baseHeader(st), name: relPath, type, devmajor: major(st.rdev), devminor: minor(st.rdev) });
        } else if (st.isFIFO()) {
          await addEntry(pack, { ...baseHeader(st), name: relPath, type: 'fifo' });
        }
        // Sockets are not representable in a tar; like Docker, they are left out.
      }
    };
    await walk('');
    pack.finalize();
  })();
  writer.catch((err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))));

  const gzip = createGzip();
  const compressing = pipeline(
    pack as unknown as AsyncIterable<Buffer>,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        diffHash.update(chunk);
        yield chunk;
      }
    },
    gzip,
    { signal },
  );
  compressing.catch(() => undefined);
  let blob;
  try {
    [blob] = await Promise.all([contentStore.ingest(gzip, {}, signal), compressing, writer]);
  } catch (err) {
    stop.abort(err);
    pack.destroy();
    throw err;
  }
  return { digest: blob.digest, size: blob.size, diffId: 'sha256:' + diffHash.digest('hex'), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', empty: entries === 0 };
}

function baseHeader(st: Stats): TarHeader {
  return { name: '', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: new Date(Math.floor(st.mtimeMs / 1000) * 1000) };
}

function wh(rel: string, name: string): string {
  return rel === '' ? WHITEOUT_PREFIX + name : `${rel}/${WHITEOUT_PREFIX}${name}`;
}

/** An entry without content; the empty buffer ends it (a callback alone leaves a 'file' open). */
function addEntry(pack: tar.Pack, header: TarHeader): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, EMPTY, (err) => (err ? reject(err) : resolve())));
}

/** Streams one file into the pack, honouring the entry's backpressure. */
async function addFile(pack: tar.Pack, header: TarHeader, abs: string, signal: AbortSignal): Promise<void> {
  let entry!: ReturnType<tar.Pack['entry']>;
  const done = new Promise<void>((resolve, reject) => {
    entry = pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
  done.catch(() => undefined);
  const file = createReadStream(abs, { signal });
  let written = 0;
  for await (const chunk of file as AsyncIterable<Buffer>) {
    // The header already promised st.size bytes: a file that grew meanwhile is cut there.
    const part = written + chunk.length > (header.size ?? 0) ? chunk.subarray(0, (header.size ?? 0) - written) : chunk;
    written += part.length;
    if (!entry.write(part)) await drained(entry, signal);
  }
  if (written !== header.size) throw new BuildError('failed-precondition', `Cannot add ${header.name} to the layer: it changed size while being read`);
  entry.end(undefined);
  await done;
}

function drained(entry: ReturnType<tar.Pack['entry']>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      entry.off('drain', onDrain);
      reject(signal.reason);
    };
    const onDrain = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    if (signal.aborted) return reject(signal.reason);
    entry.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Absolute paths of the upper dir's opaque directories: one getfattr run for the whole tree
 * instead of one spawn per directory. getfattr exits 1 when some files lack the attribute,
 * so its stdout is what counts.
 */
async function opaqueDirs(upper: string, signal?: AbortSignal): Promise<Set<string>> {
  // Streamed line by line, stderr (one "No such attribute" per plain file) discarded: a layer
  // with a million files must not be buffered twice in memory.
  const child = spawn('getfattr', ['-R', '-h', '-n', 'trusted.overlay.opaque', '--absolute-names', upper], { stdio: ['ignore', 'pipe', 'ignore'], signal });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new BuildError('internal', 'Cannot read overlay opaque markers: getfattr is not installed (Debian package attr)') : err));
    child.once('close', () => resolve());
  });
  const dirs = new Set<string>();
  let file: string | undefined;
  for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
    if (line.startsWith('# file: ')) file = unescapeGetfattr(line.slice('# file: '.length));
    // "y" marks an opaque dir; newer kernels also write "x" (has whiteouts), which is not opaque.
    else if (file !== undefined && line === 'trusted.overlay.opaque="y"') dirs.add(path.resolve(file));
  }
  // getfattr exits 1 when some files lack the attribute, so its stdout is what counts.
  await exited;
  return dirs;
}

/** getfattr quotes unusual bytes in names as backslash + 3 octal digits. */
function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString())) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString(), 8));
      i += 3;
    } else {
      bytes.push(raw[i]);
    }
  }
  return Buffer.from(bytes).toString('utf8');
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
