import type { Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { PlannedEntry } from './generation-builder';
import type { Generation } from './locals-store';
import type { IndexEntry } from './listing-index';
import type { LocalTransfer } from './transfer-types';

/** What KeyedLocalsReceiver knows of one keyed local during its sync, from begin() to finish(). */
export interface LocalState {
  key: string;
  kept?: { generation: Generation; index: ReadonlyMap<string, IndexEntry>; release: () => void };
  entries: PlannedEntry[];
  seen: Set<string>;
  dirs: Set<string>;
  /** requested and not yet answered: path → its planned entry */
  waiting: Map<string, PlannedEntry>;
  batch: string[];
  listingDone: boolean;
  tmp?: string;
  /**
   * Directories made below `<tmp>/tree` for received files, '' for the tree itself: a file is
   * received where the new generation has it, so nothing moves it afterwards.
   */
  madeDirs: Set<string>;
  same: boolean;
  transfer: LocalTransfer;
  dir?: string;
}

/** The file being received: its disk work runs as a chain the stream need not wait for. */
export interface OpenFile {
  /**
   * open, then each write in order; resolves to the handle. Unset until content comes, and
   * never set for a file whose content came in one message (written inline, see `data`).
   */
  chain?: Promise<FileHandle>;
  local: string;
  planned: PlannedEntry;
  /** bytes received (queued on the chain) */
  written: number;
  /** sha256 of what was received so far, for a file of several chunks */
  hash?: Hash;
}
