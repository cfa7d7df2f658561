import type { BuildErrorCode } from '../solver/build-error';
import type { WalkEntry } from './context-walk';
import type { WalkedFiles } from './listed-files';

/** Batches the worker may post before the main thread takes them (about 64,000 entries). */
export const AHEAD_BATCHES = 128;

/**
 * What the worker is asked to walk (its workerData). Made by PrefetchedWalk in the same process,
 * so it is not checked again (no zod: the worker loads only what the walk needs).
 */
export interface WalkJob {
  name: string;
  locals: Record<string, string>;
  filename: string;
  /** Int32Array over it: [0] is how many batches the main thread has taken */
  taken: SharedArrayBuffer;
  /**
   * `listing`: each batch as its encoded listing and its files with content (the upload of a
   * keyed local needs no more); `entries`: the entries themselves (a local sent whole)
   */
  mode: 'listing' | 'entries';
}

/** A WalkEntry as it crosses threads: its attributes as pairs (a Buffer arrives as a Uint8Array). */
export type WireEntry = Omit<WalkEntry, 'xattrs'> & { xattrs: Array<[string, Uint8Array]> };

/**
 * Worker -> main thread. A batch holds at most BATCH_ENTRIES entries and about BATCH_BYTES
 * (listing-entry.ts). In `listing` mode, `listing` is the BuildClientMessage that lists it (see
 * encodeListing; the encoding costs the worker's time, not the main thread's) and `files` its
 * files with content.
 */
export type WalkMessage =
  | { kind: 'entries'; entries: WireEntry[] }
  | { kind: 'listing'; listing: Uint8Array; files: WalkedFiles }
  | { kind: 'done' }
  | { kind: 'error'; code: BuildErrorCode; message: string };

/** Blocks until fewer than AHEAD_BATCHES of the `posted` batches are untaken (`taken[0]`). */
export function waitForRoom(taken: Int32Array, posted: number): void {
  for (let seen = Atomics.load(taken, 0); posted - seen >= AHEAD_BATCHES; seen = Atomics.load(taken, 0)) Atomics.wait(taken, 0, seen, 1000);
}

/** Tells the worker that a batch was taken. */
export function takeOne(taken: Int32Array): void {
  Atomics.add(taken, 0, 1);
  Atomics.notify(taken, 0);
}
