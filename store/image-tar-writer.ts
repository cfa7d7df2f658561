import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import { BuildError } from '../solver/build-error';
import type { ContentStore } from './content-store';

/** One member of an image tar: small generated text, or a blob streamed from the store. */
export type TarMember =
  | { name: string; kind: 'dir' }
  | { name: string; kind: 'bytes'; data: Buffer }
  | { name: string; kind: 'blob'; digest: string; size: number };

/** A fixed mtime keeps archives of the same image byte-identical. */
const EPOCH = new Date(0);

async function writeStream(entry: Writable, source: Readable, signal?: AbortSignal): Promise<void> {
  try {
    for await (const chunk of source) {
      signal?.throwIfAborted();
      // Honour the entry's backpressure: the tar only moves as fast as `out` takes it.
      if (!entry.write(chunk as Buffer)) await once(entry, 'drain', { signal });
    }
  } finally {
    source.destroy();
  }
}

function addMember(pack: ReturnType<typeof tarPack>, member: TarMember, store: ContentStore, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (member.kind === 'dir') {
      pack.entry({ name: member.name, type: 'directory', mode: 0o755, mtime: EPOCH }, done);
      return;
    }
    if (member.kind === 'bytes') {
      pack.entry({ name: member.name, mode: 0o644, mtime: EPOCH }, member.data, done);
      return;
    }
    const entry = pack.entry({ name: member.name, size: member.size, mode: 0o644, mtime: EPOCH }, done) as unknown as Writable;
    // Its failures reach us through `done` and the promise chain below; an unheard 'error'
    // event would crash the process.
    entry.on('error', () => undefined);
    store.read(member.digest)
      .then((source) => writeStream(entry, source, signal))
      .then(() => entry.end(), (err: unknown) => {
        entry.destroy(err as Error);
        reject(err);
      });
  });
}

/**
 * Writes `members` as a tar to `out`, one at a time, blobs streamed from `store` (never held
 * in memory). Resolves when `out` has taken everything; `out` is ended. On error or abort both
 * the tar and `out` are destroyed.
 */
export async function writeImageTar(members: readonly TarMember[], store: ContentStore, out: Writable, signal?: AbortSignal): Promise<void> {
  for (const m of members) {
    if (m.kind !== 'blob') continue;
    const info = await store.info(m.digest);
    if (!info) throw new BuildError('not-found', `Cannot export image: blob ${m.digest} is not in the content store`);
    if (info.size !== m.size) throw new BuildError('invalid-argument', `Cannot export image: blob ${m.digest} is ${info.size} bytes, its descriptor says ${m.size}`);
  }
  const pack = tarPack();
  // streamx may emit 'error' after the pipeline has let go of it; the pipeline reports it.
  pack.on('error', () => undefined);
  const piped = pipeline(pack as unknown as Readable, out, { signal });
  // The pipeline can fail (abort, `out` closed) while a member is being written: race it, so
  // that a failure ends the member loop instead of leaving it waiting on a dead stream.
  const failed = piped.then(() => new Promise<never>(() => undefined));
  failed.catch(() => undefined);
  try {
    for (const m of members) await Promise.race([addMember(pack, m, store, signal), failed]);
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await piped.catch(() => undefined);
    throw err;
  }
  await piped;
}
