import { closeSync, constants as fsc, fstatSync, openSync, promises as fsp, readSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { PreEncoded } from '../buildd/api/pre-encoded';
import { BuildError } from '../solver/build-error';
import { localIgnore, walkContext, type WalkEntry } from './context-walk';
import { encodeListing } from './listing-encoder';
import { ListedFiles, walkedFiles, type ListedFile, type WalkedFiles } from './listed-files';
import { BATCH_BYTES, BATCH_ENTRIES, listingEntry, listingEntryBytes } from './listing-entry';
import type { PrefetchedWalk } from './walk-prefetch';
import type { FileRequestQueue } from './file-request-queue';

/** Content chunk size on the wire: the daemon accepts at most 1 MiB per FileData. */
export const UPLOAD_CHUNK_BYTES = 1024 * 1024;

/** The BuildStart message as sent (shape of buildd.v1.BuildStart). */
export interface StartMessage {
  /** ids of the forwarded ssh agents (--ssh) */
  ssh_ids?: string[];
  frontend: string;
  frontend_attrs: Record<string, string>;
  local_names: string[];
  exports: Array<{ type: string; attrs: Record<string, string> }>;
  no_cache: boolean;
  entitlements: string[];
  /** locals sent incrementally: local name → key of the daemon's kept copy */
  local_keys?: Record<string, string>;
  /** the client answers the daemon's requests for registry credentials */
  forward_credentials?: boolean;
  /** --export-cache and --import-cache entries */
  cache_exports?: Array<{ type: string; attrs: Record<string, string>; present?: string[] }>;
  cache_imports?: Array<{ type: string; attrs: Record<string, string> }>;
}

/** What was sent of the locals' content (for the tests and a debug line). */
export interface UploadStats {
  files: number;
  bytes: number;
}

/**
 * Sends the start message, then every local (each with its .dockerignore applied, the
 * `context` one preferring `<Dockerfile>.dockerignore`; of `dockerfile`, only the Dockerfile),
 * then locals_done; the call stays open for the session. Waits for 'drain' whenever the call's
 * buffer is full, and reads files in 1 MiB chunks, so memory stays flat whatever the context.
 *
 * A local with a key (start.local_keys) is listed without content, then only the files the
 * daemon asks for (`requests`) are sent; locals_done follows once every keyed local's
 * requests are done.
 */
export async function uploadLocals(
  call: Writable,
  start: StartMessage,
  locals: Record<string, string>,
  requests?: FileRequestQueue,
  /** walks started before the call (see PrefetchedWalk), by local name; each is read once */
  prefetched?: Readonly<Record<string, PrefetchedWalk>>,
): Promise<UploadStats> {
  const send = (msg: object): Promise<void> => writeWithBackpressure(call, msg);
  const keys = start.local_keys ?? {};
  if (Object.keys(keys).length > 0 && requests === undefined) throw new BuildError('internal', 'Cannot send keyed locals: no queue for the daemon\'s requests');
  const stats: UploadStats = { files: 0, bytes: 0 };
  /** per keyed local, the files that may be asked for, until asked */
  const listed = new Map<string, ListedFiles>();
  await send({ start });
  for (const name of start.local_names) {
    const dir = locals[name] as string;
    const filename = start.frontend_attrs.filename ?? 'Dockerfile';
    const keyed = Object.hasOwn(keys, name);
    const walked = prefetched?.[name];
    if (keyed) {
      const files = new ListedFiles(dir);
      listed.set(name, files);
      // walked and encoded ahead in a worker thread while the client loaded and connected
      // (see PrefetchedWalk), or walked and encoded here
      const batches = walked?.mode === 'listing' ? walked.batches() : listingBatches(name, walked?.entries() ?? walkContext(dir, await localIgnore(name, locals, filename)));
      for await (const batch of batches) {
        files.add(batch.files);
        await send(new PreEncoded(batch.listing));
        // the walk is synchronous: a turn of the event loop per batch lets gRPC put it on the
        // wire now, so the daemon works on it while the next one is listed
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await send({ listing_done: { local: name } });
      continue;
    }
    for await (const e of walked?.mode === 'entries' ? walked.entries() : walkContext(dir, await localIgnore(name, locals, filename))) {
      await send({ entry: listingEntry(name, e) });
      if (e.type !== 'FILE' || e.size === 0) continue;
      await sendContent(e, send);
      stats.files++;
      stats.bytes += e.size;
    }
  }
  while (listed.size > 0) {
    const r = await (requests as FileRequestQueue).next();
    const files = listed.get(r.local);
    if (!files) throw new BuildError('internal', `Cannot answer the daemon: it asked for files of ${r.local}, which has no open listing`);
    const asked = r.paths.map((rel) => {
      const e = files.take(rel);
      if (!e) throw new BuildError('internal', `Cannot answer the daemon: it asked for ${r.local}/${rel}, which was not listed or was sent already`);
      return e;
    });
    for (const e of asked) {
      // A small file in four synchronous calls (open, fstat, read, close): microseconds of
      // kernel work each, where a thread-pool round trip per call cost several times that.
      const content = e.size <= UPLOAD_CHUNK_BYTES ? readListed(e) : undefined;
      await send({ file: { local: r.local, path: e.rel } });
      if (content) await send({ data: { data: content } });
      else await sendContent(e, send, true);
      stats.files++;
      stats.bytes += e.size;
      // the event loop gets a turn now and then, also while the wire keeps up
      if (stats.files % TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (r.done) listed.delete(r.local);
  }
  await send({ locals_done: {} });
  // no half-close: the daemon may still ask for secrets and ssh agents (run-build ends the call)
  return stats;
}

/**
 * A keyed listing walked here, or by a walk started for entries (no prefetched listing: tests,
 * and a local the client did not walk ahead), in the batches a PrefetchedWalk yields.
 */
async function* listingBatches(name: string, walk: Iterable<WalkEntry> | AsyncIterable<WalkEntry>): AsyncGenerator<{ files: WalkedFiles; listing: Uint8Array }> {
  let entries: WalkEntry[] = [];
  let bytes = 0;
  for await (const e of walk) {
    entries.push(e);
    bytes += listingEntryBytes(e);
    if (entries.length >= BATCH_ENTRIES || bytes >= BATCH_BYTES) {
      yield { files: walkedFiles(entries), listing: encodeListing(name, entries) };
      entries = [];
      bytes = 0;
    }
  }
  if (entries.length > 0) yield { files: walkedFiles(entries), listing: encodeListing(name, entries) };
}

/** Files sent between two turns of the event loop. */
const TURN = 64;

/** The whole content of a small file asked for after the listing; it must still be as listed. */
function readListed(e: ListedFile): Buffer {
  let fd: number;
  try {
    fd = openSync(e.abs, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot read ${e.abs}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size !== e.size || Math.floor(st.mtimeMs) !== e.mtimeMs) {
      throw new BuildError('invalid-argument', `Cannot send ${e.abs}: the file changed after it was listed`);
    }
    const buf = Buffer.allocUnsafe(e.size);
    let got = 0;
    while (got < e.size) {
      const n = readSync(fd, buf, got, e.size - got, got);
      if (n === 0) throw new BuildError('invalid-argument', `Cannot send ${e.abs}: the file shrank while it was read`);
      got += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Sends exactly `e.size` bytes, the size already announced; a file that changed meanwhile fails. */
async function sendContent(e: ListedFile, send: (msg: object) => Promise<void>, checkListed = false): Promise<void> {
  // O_NOFOLLOW: if the file was swapped for a symlink since lstat, refuse instead of following it
  const fh = await fsp.open(e.abs, fsc.O_RDONLY | fsc.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    throw new BuildError('invalid-argument', `Cannot read ${e.abs}: ${err.code ?? err.message}`);
  });
  try {
    if (checkListed) {
      // asked for after the whole listing went: the daemon kept the listed size and mtime, so the content must match them
      const st = await fh.stat();
      if (!st.isFile() || st.size !== e.size || Math.floor(st.mtimeMs) !== e.mtimeMs) {
        throw new BuildError('invalid-argument', `Cannot send ${e.abs}: the file changed after it was listed`);
      }
    }
    let sent = 0;
    while (sent < e.size) {
      const want = Math.min(UPLOAD_CHUNK_BYTES, e.size - sent);
      // a fresh buffer per chunk: the message may still be queued when the next read starts
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, sent);
      if (bytesRead === 0) throw new BuildError('invalid-argument', `Cannot send ${e.abs}: the file shrank while it was read`);
      sent += bytesRead;
      await send({ data: { data: buf.subarray(0, bytesRead) } });
    }
  } finally {
    await fh.close();
  }
}

function writeWithBackpressure(call: Writable, msg: object): Promise<void> {
  if (call.destroyed || call.writableEnded) return Promise.reject(new BuildError('cancelled', 'Cannot send locals: the call has ended'));
  if (call.write(msg)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      call.off('drain', onDrain);
      call.off('close', onClose);
      call.off('error', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new BuildError('cancelled', 'Cannot send locals: the call has ended'));
    call.on('drain', onDrain);
    call.on('close', onClose);
    call.on('error', onClose);
  });
}
