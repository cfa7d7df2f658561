import type { SnapshotterKind } from './snapshot-table';
import type { OverlayXattrNamespace } from './trusted-xattr-probe';

/** What a snapshotter knows about one snapshot. */
export interface SnapshotInfo {
  id: string;
  /** the committed snapshot this one is layered on; absent for a base layer */
  parent?: string;
  kind: 'active' | 'committed';
  /** ISO 8601 */
  createdAt: string;
  /**
   * What this snapshot's files share inodes with, when a COPY hard-linked them (see
   * CommitOptions.linkedFrom); absent when it shares none.
   */
  linkedFrom?: string[];
}

/** What a commit records beside the layer. */
export interface CommitOptions {
  /**
   * Where the layer's hard-linked files come from: `local:<key>` for a kept local, and for a
   * committed layer `layer:<id>` with that layer's own linkedFrom. A COPY links only from a
   * source that shares nothing with its base chain, so no inode shows at two paths of one view
   * (a tar or a copy inside a later step would take them for hard links).
   */
  linkedFrom?: string[];
  /**
   * When the layer was made, instead of when it was prepared: an imported cache's layer keeps
   * the time its first build made it, so images assembled from it date their history the same.
   */
  createdAt?: string;
  /**
   * Runs in the transaction that records the commit, with the new snapshot's id: the rows that
   * point at it (its cache record, its layer) land with it or not at all. Synchronous, and only
   * through the snapshotter's own database (MetaDb.open shares one connection per root).
   */
  within?: (id: string) => void;
}

/**
 * Layered filesystems for builds, containerd style: OverlaySnapshotter (overlayfs mounts) and
 * NativeSnapshotter (a full copy per snapshot, where overlayfs cannot be mounted).
 *
 * Lifecycle:
 * - `prepare(parent)` makes an *active* snapshot: an empty writable layer on top of the
 *   committed chain ending at `parent` (or on nothing). It is not mounted until
 *   `ActiveSnapshot.mount()` is called; a build writes into the merged directory.
 * - `commit(active)` unmounts it and turns it into a *committed*, immutable snapshot that
 *   survives a daemon restart (and `kill -9`): its row in the metadata database is written
 *   after the layer's files are synced, in one transaction with what `within` records. Committed snapshots are parents of later ones and sources for
 *   `mountView` (read-only) and `upperDir` (for diffs).
 * - `ActiveSnapshot.release()` throws away an active snapshot that will not be committed
 *   (failure, cancel); after a commit it does nothing. Active snapshots left by a crash are
 *   removed when the snapshotter is opened again, so a caller never sees them after a restart.
 * - `remove(id)` deletes a snapshot; a committed one only when no snapshot has it as parent
 *   and no view of it is mounted (garbage collection walks leaves first).
 * - `mountView(id)` gives a read-only mount of a committed snapshot, released by its
 *   `release()`; every mount the snapshotter makes is also cleaned up at the next open.
 */
export interface Snapshotter {
  /** how snapshots are layered: overlayfs mounts or native copies (buildctl debug workers shows it) */
  readonly kind: SnapshotterKind;
  /**
   * Where the upper dirs keep overlay's markers (opaque directories): `trusted` (the default
   * when absent) or `user` for rootless `userxattr` mounts. Fixed for the snapshotter's life.
   */
  readonly overlayXattrs?: OverlayXattrNamespace;
  /** A writable layer on top of a committed parent chain (or empty). */
  prepare(parent: string | undefined, signal?: AbortSignal): Promise<ActiveSnapshot>;
  /** Unmounts if mounted, becomes committed, returns the committed id. */
  commit(active: ActiveSnapshot, opts?: CommitOptions): Promise<string>;
  get(id: string): Promise<SnapshotInfo | undefined>;
  /** Every committed snapshot (for du and GC), in no particular order. */
  list(): Promise<SnapshotInfo[]>;
  /** Whether a read-only view of `id` is mounted now (a COPY --from reading it). */
  viewed(id: string): boolean;
  /** The layer's own changes, in overlay format (whiteouts as 0:0 char devices, opaque xattrs). */
  upperDir(id: string): Promise<string>;
  /** Committed ids from the base up to `id`. */
  chain(id: string): Promise<string[]>;
  /** Active: unmount + delete; committed: only if no child references it. */
  remove(id: string): Promise<void>;
  /**
   * For GC: takes committed snapshot `id` out at once (get, list and chain no longer see it)
   * when nothing is layered on it and no view of it is mounted, and returns the deletion of its
   * files to await; undefined, and nothing changed, otherwise. Synchronous, so that the
   * caller's last check and the detach are one step no build can come between.
   */
  detach(id: string): (() => Promise<void>) | undefined;
  /** A read-only mount of a committed snapshot (for COPY --from and user resolution). */
  mountView(id: string): Promise<SnapshotView>;
}

/** A read-only mounted view; `release()` unmounts it (idempotent). */
export interface SnapshotView {
  path: string;
  release(): Promise<void>;
}

/**
 * A writable snapshot being built. `mount()` returns the merged directory and is idempotent;
 * `release()` unmounts and deletes it unless it was committed. Exactly one of `commit` or
 * `release` should end its life; calling `release` after `commit` is harmless.
 */
export interface ActiveSnapshot {
  id: string;
  parent?: string;
  /** merged dir; idempotent */
  mount(): Promise<string>;
  /**
   * The writable layer itself, for a writer that needs no merged view (overlay snapshotters
   * only: absent where a snapshot is a full copy). Only before `mount()`: overlayfs does not
   * promise to show what is written under a mounted layer, so it fails once mounted.
   */
  upperDir?(): Promise<string>;
  /** unmount + remove when not committed */
  release(): Promise<void>;
}
