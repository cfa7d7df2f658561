import * as path from 'node:path';
import type { FileOp } from '../../solver/op';
import type { OpResult } from '../../solver/worker';
import { copyAction } from '../../store/fs-copy';
import { overlayKeepsPathsInPlace, singleLayerSource } from '../../store/single-layer-source';
import type { ActiveSnapshot, Snapshotter } from '../../store/snapshotter';
import { copyUpParents } from '../../store/upper-parents';

/**
 * COPY by hard links where that gives the same layer as a copy through the mount. Lifecycle:
 * one per worker, for the daemon's life; it keeps nothing between calls (what a layer links
 * from is recorded in its snapshot's metadata, CommitOptions.linkedFrom).
 */
export class LinkedCopier {
  /**
   * @param immutableLocalsDir where the kept copies of keyed locals live; absent: no context is linked
   */
  constructor(
    private readonly snapshotter: Snapshotter,
    private readonly tmpDir: string,
    private readonly immutableLocalsDir: string | undefined,
  ) {}

  /**
   * The common `COPY . /app` and `COPY --from=build /out /out`: one copy, from a tree whose files
   * never change (a kept local, or a committed snapshot's layer that alone holds the source
   * paths: see singleLayerSource), into a path the base does not have yet or an empty directory.
   * It is written straight into the snapshot's upper dir, its files hard-linked from the source
   * (no inode or data of their own: a 20,000-file context costs links, not copies), and the
   * directories on the way copied up as overlayfs would. Same layer, same image. Gives what the
   * layer links from (CommitOptions.linkedFrom); undefined, with nothing written, for anything
   * else, and for a source that shares inodes with the base already (the copy then goes
   * through the mount, merging with what is below).
   */
  async copy(op: FileOp, inputs: OpResult[], base: string | undefined, active: ActiveSnapshot, signal: AbortSignal): Promise<string[] | undefined> {
    const action = op.actions[0];
    if (op.actions.length !== 1 || action?.type !== 'copy' || action.link || action.extract || action.chown !== undefined || active.upperDir === undefined) return undefined;
    if (!(await overlayKeepsPathsInPlace())) return undefined;
    const src = action.src < 0 ? undefined : inputs[action.src];
    let source: { root: string; lineage: string[]; fromLayer: boolean } | undefined;
    if (src?.kind === 'local') {
      const key = this.keptLocalKey(src.dir);
      if (key !== undefined) source = { root: src.dir, lineage: [`local:${key}`], fromLayer: false };
    } else if (src?.kind === 'snapshot' && src.id !== null && !action.parents) {
      const holder = await this.layerHolding(src.id, action.srcPaths);
      if (holder !== undefined) source = { root: holder.upper, lineage: [`layer:${holder.id}`, ...holder.linkedFrom], fromLayer: true };
    }
    if (source === undefined) return undefined;
    const shared = await this.chainLineage(base);
    if (source.lineage.some((t) => shared.has(t))) return undefined;
    const upper = await active.upperDir();
    const view = base === undefined ? undefined : await this.snapshotter.mountView(base);
    let parents;
    try {
      parents = await copyUpParents(view?.path, upper, action.dest);
    } finally {
      await view?.release();
    }
    if (parents === undefined) return undefined;
    await copyAction(action, source.root, upper, { tmpDir: this.tmpDir, signal, linkFiles: true, skipWhiteouts: source.fromLayer });
    await parents.finish();
    return source.lineage;
  }

  /** The key of a kept local's published tree (`<kept>/<key>/gen-<n>/tree`); undefined for any other dir. */
  private keptLocalKey(dir: string): string | undefined {
    const kept = this.immutableLocalsDir;
    if (kept === undefined) return undefined;
    const m = /^([A-Za-z0-9._-]{1,128})\/gen-\d+\/tree$/.exec(path.relative(kept, dir));
    return m?.[1];
  }

  /** The layer of snapshot `id` that alone holds every path of `paths` (see singleLayerSource). */
  private async layerHolding(id: string, paths: string[]): Promise<{ id: string; upper: string; linkedFrom: string[] } | undefined> {
    const chain = await this.snapshotter.chain(id);
    const uppers = await Promise.all(chain.map((layer) => this.snapshotter.upperDir(layer)));
    const view = await this.snapshotter.mountView(id);
    let upper: string | undefined;
    try {
      upper = await singleLayerSource(view.path, uppers, paths);
    } finally {
      await view.release();
    }
    const layer = upper === undefined ? undefined : chain[uppers.indexOf(upper)];
    if (upper === undefined || layer === undefined) return undefined;
    return { id: layer, upper, linkedFrom: (await this.snapshotter.get(layer))?.linkedFrom ?? [] };
  }

  /** Every layer of `id`'s chain and what each layer's files share inodes with. */
  private async chainLineage(id: string | undefined): Promise<Set<string>> {
    const out = new Set<string>();
    if (id === undefined) return out;
    for (const layer of await this.snapshotter.chain(id)) {
      out.add(`layer:${layer}`);
      for (const t of (await this.snapshotter.get(layer))?.linkedFrom ?? []) out.add(t);
    }
    return out;
  }
}
