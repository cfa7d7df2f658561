import { createHash } from 'node:crypto';
import { mkdirSync, promises as fsp, utimesSync } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { BuildError } from '../solver/build-error';
import { createDecompressor, type CompressionType } from './layer-compression';
import { cleanAbsolute, resolveInRootSync } from './safe-path';
import { drained } from './stream-drained';
import { writeTarEntry } from './tar-entry-writer';
import { createTarExtract } from './tar-xattrs';
import { drainEntry } from './tar-entry-writer';
import { lstatOrUndefinedSync } from './path-exists';

/** One entry of an extract stream: its header and a readable of its content. */
type TarEntry = tar.ExtractEvents['entry'][1];
const OPAQUE_MARKER = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';

/** The default limit of one layer's uncompressed tar: far above real layers, far below a full disk. */
export const DEFAULT_MAX_LAYER_BYTES = 64 * 1024 ** 3;

/** What applying a layer proved about it. */
export interface AppliedLayer {
  /** sha256 of the uncompressed tar, to check against the image config's diff_ids */
  diffId: string;
}

/**
 * Unpacks a layer (gzip, zstd or plain tar, told apart by its first bytes) onto `root`, normally the
 * merged dir of a mounted active snapshot, so overlay records deletions as whiteouts itself.
 *
 * Every entry name is cleaned to an absolute path and resolved inside `root` with symlinks
 * followed *inside* it (the entry's own last component is never followed), hard link targets
 * too: a hostile layer can write, link or delete only inside `root`. Whiteouts delete,
 * `.wh..wh..opq` empties a directory of what earlier layers put there, an existing entry is
 * replaced (a directory stays and takes the new owner and mode), directory times are set last.
 * Each entry's SCHILY.xattr.* PAX records are set on it, byte for byte (see writeTarEntry).
 * A tar longer than `maxBytes` fails the unpack as soon as it gets there.
 */
export async function applyLayer(source: Readable, root: string, signal?: AbortSignal, maxBytes = DEFAULT_MAX_LAYER_BYTES): Promise<AppliedLayer> {
  const rootAbs = path.resolve(root);
  const compression = await sniffCompression(source);
  const hash = createHash('sha256');
  let total = 0;
  // Keeps PAX values as bytes: a file capability is binary (see createTarExtract).
  const extract = createTarExtract();
  const stop = new AbortController();
  const feedSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let feedError: unknown;
  const feed = async function (chunks: AsyncIterable<Buffer>): Promise<void> {
    for await (const chunk of chunks) {
      total += chunk.length;
      // a small blob can inflate without end (a decompression bomb): the tar is counted as it comes
      // kept here: stream/promises' pipeline reports an AbortError instead of what its last step threw
      if (total > maxBytes) throw (feedError = new BuildError('invalid-argument', `Cannot unpack the layer: it decompresses to more than ${maxBytes} bytes, the limit of a layer (maxLayerBytes in the daemon config)`));
      hash.update(chunk);
      if (!extract.write(chunk)) await drained(extract);
    }
    extract.end(undefined);
  };
  const feeding = compression === 'uncompressed'
    ? pipeline(source, feed, { signal: feedSignal })
    : pipeline(source, createDecompressor(compression), feed, { signal: feedSignal });
  // A feed that fails mid-entry (the limit, a truncated blob) also stops the entry being written,
  // which would otherwise wait for content that never comes.
  feeding.catch((err: unknown) => {
    feedError ??= err;
    extract.destroy(err instanceof Error ? err : new Error(String(err)));
    stop.abort(err);
  });

  const state: ApplyState = { root: rootAbs, written: new Set(), dirTimes: [] };
  try {
    for await (const entry of extract) {
      signal?.throwIfAborted();
      await applyEntry(entry, state, feedSignal);
    }
    await feeding;
  } catch (err) {
    // what failed first: stopping the feed below makes it fail too, with an AbortError
    const failure = signal?.aborted ? err : (feedError ?? err);
    stop.abort(err);
    extract.destroy();
    await feeding.catch(() => undefined);
    throw failure;
  }
  // Children change their directory's mtime: set directories' times last, deepest first.
  for (const [dir, mtime] of state.dirTimes.reverse()) utimesSync(dir, mtime, mtime);
  return { diffId: 'sha256:' + hash.digest('hex') };
}

interface ApplyState {
  root: string;
  /** host paths this layer created, kept by an opaque marker that comes after them */
  written: Set<string>;
  dirTimes: Array<[string, Date]>;
}

async function applyEntry(entry: TarEntry, state: ApplyState, signal?: AbortSignal): Promise<void> {
  const h = entry.header;
  const name = cleanAbsolute(h.name);
  const base = path.posix.basename(name);
  const parent = path.posix.dirname(name);
  const fail = (why: string): BuildError => new BuildError('invalid-argument', `Cannot apply layer entry ${JSON.stringify(h.name)}: ${why}`);

  if (name === '/' || base === OPAQUE_MARKER || base.startsWith(WHITEOUT_PREFIX)) await drainEntry(entry);
  if (name === '/') return; // the root's own entry: the snapshot root keeps its metadata
  if (base === OPAQUE_MARKER) {
    const dir = resolveInRootSync(state.root, parent);
    const st = lstatOrUndefinedSync(dir);
    if (st?.isDirectory()) await emptyDir(dir, state.written);
    return;
  }
  if (base.startsWith(WHITEOUT_PREFIX)) {
    const victim = resolveInRootSync(state.root, path.posix.join(parent, base.slice(WHITEOUT_PREFIX.length)), { followFinal: false });
    if (victim !== state.root) await fsp.rm(victim, { recursive: true, force: true });
    return;
  }

  // path resolution and mkdir are synchronous for the reason writeTarEntry's metadata calls are
  const target = resolveInRootSync(state.root, name, { followFinal: false });
  if (target === state.root) return drainEntry(entry);
  try {
    mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
  } catch (err) {
    throw fail(`its parent is not a directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  state.written.add(target);
  const wrote = await writeTarEntry(entry, target, {
    root: state.root,
    owner: null,
    hardLinkMetadata: 'target',
    skipZeroCharDevice: true,
    dirTimes: state.dirTimes,
    fail,
    rootName: "the layer's root",
    signal,
  });
  if (!wrote) state.written.delete(target);
}

/** Removes what `dir` holds except paths this layer wrote (descending into kept directories). */
async function emptyDir(dir: string, keep: Set<string>): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    const p = path.join(dir, name);
    if (!keep.has(p)) {
      await fsp.rm(p, { recursive: true, force: true });
      continue;
    }
    const st = await fsp.lstat(p);
    if (st.isDirectory()) await emptyDir(p, keep);
  }
}

/**
 * Reads just enough of `src` to see the gzip magic (1f 8b) and puts it back, so the rest of
 * the pipeline sees the stream from its first byte.
 */
/** gzip, zstd or a plain tar, told apart by the first bytes (left in `src`). */
async function sniffCompression(src: Readable): Promise<CompressionType> {
  const chunks: Buffer[] = [];
  let len = 0;
  while (len < 4 && !src.readableEnded) {
    const chunk = src.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      len += chunk.length;
      continue;
    }
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        src.off('readable', onReadable);
        src.off('end', onReadable);
        src.off('error', done);
        if (err) reject(err);
        else resolve();
      };
      const onReadable = (): void => done();
      src.on('readable', onReadable);
      src.on('end', onReadable);
      src.on('error', done);
    });
  }
  const head = Buffer.concat(chunks).subarray(0, 4);
  for (const chunk of chunks.reverse()) src.unshift(chunk);
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.equals(ZSTD_MAGIC)) return 'zstd';
  return 'uncompressed';
}

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
