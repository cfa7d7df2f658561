import type { BuildErrorCode } from '../solver/build-error';
import type { WalkEntry } from './context-walk';

/** Entries in one message from the walk worker. */
export const WALK_BATCH = 512;
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
}

/** A WalkEntry as it crosses threads: its attributes as pairs (a Buffer arrives as a Uint8Array). */
export type WireEntry = Omit<WalkEntry, 'xattrs'> & { xattrs: Array<[string, Uint8Array]> };

/** Worker -> main thread. */
export type WalkMessage = { kind: 'entries'; entries: WireEntry[] } | { kind: 'done' } | { kind: 'error'; code: BuildErrorCode; message: string };
