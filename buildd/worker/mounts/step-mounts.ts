import * as path from 'node:path';
import type { ExecMount, ExecOp } from '../../../solver/op';
import type { OpResult } from '../../../solver/worker';
import { mkdirAll } from '../../../store/mkdir-all';
import { resolveInRoot } from '../../../store/safe-path';
import type { Snapshotter } from '../../../store/snapshotter';
import type { OciMount } from '../oci-spec';
import { prepareBindMount, PreparedMount } from './bind-mount';
import { CacheMounts } from './cache-mounts';
import { openMountSource, sourceNotFound } from './mount-source';
import { tmpfsMount } from './tmpfs-mount';
import { promises as fsp } from 'node:fs';

/** What preparing a step's mounts uses; shared by every step of the daemon. */
export interface StepMountsDeps {
  snapshotter: Snapshotter;
  tmpDir: string;
  cacheMounts: CacheMounts;
}

/** A step's mounts besides its root, ready for the container spec. */
export interface StepMounts {
  mounts: OciMount[];
  /** releases cache leases, views, throwaway snapshots and copies; call once, after the container is deleted */
  release(): Promise<void>;
}

/**
 * Prepares every mount of `op` besides its root, in the order the RUN gives them, and makes
 * their directory targets in `rootfs` as the reference does: a missing target of a cache,
 * tmpfs or directory bind mount (and its missing parents) is created 0755 and owned by root,
 * and stays in the layer as an empty directory; a file bind's target is runc's stub, which
 * the executor's stub cleaner removes. On failure what was prepared is released.
 */
export async function prepareStepMounts(
  op: ExecOp, inputs: OpResult[], rootfs: string, deps: StepMountsDeps, ctx: { signal: AbortSignal; step: string },
): Promise<StepMounts> {
  const extra = op.mounts.filter((m) => m.dest !== '/');
  const prepared = new Map<ExecMount, PreparedMount>();
  const release = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const p of [...prepared.values()].reverse()) await p.release().catch((err: unknown) => errors.push(err));
    prepared.clear();
    if (errors.length > 0) throw errors[0];
  };
  // Cache leases first, in one global order (by id): two steps that lock the same two caches
  // never hold one each while waiting for the other.
  const caches = extra.filter((m) => m.type === 'cache').sort((a, b) => compare(a.cache?.id ?? '', b.cache?.id ?? '') || compare(a.dest, b.dest));
  const others = extra.filter((m) => m.type !== 'cache');
  try {
    for (const m of [...caches, ...others]) {
      ctx.signal.throwIfAborted();
      const input = m.input < 0 ? undefined : inputs[m.input];
      const type = m.type ?? 'bind';
      let p: PreparedMount;
      if (type === 'bind') p = await prepareBindMount(m, input, deps);
      else if (type === 'cache') p = await prepareCacheMount(m, input, deps, ctx);
      else p = { oci: tmpfsMount(m), isDir: true, release: async () => undefined };
      prepared.set(m, p);
    }
    for (const m of extra) {
      if ((prepared.get(m) as PreparedMount).isDir) await mkdirAll(rootfs, await resolveInRoot(rootfs, m.dest), 0o755, { uid: 0, gid: 0 });
    }
    return { mounts: extra.map((m) => (prepared.get(m) as PreparedMount).oci), release };
  } catch (err) {
    await release().catch(() => undefined);
    throw err;
  }
}

async function prepareCacheMount(
  m: ExecMount, input: OpResult | undefined, deps: StepMountsDeps, ctx: { signal: AbortSignal; step: string },
): Promise<PreparedMount> {
  const cache = m.cache as NonNullable<ExecMount['cache']>;
  const selector = m.selector ?? '/';
  const seedKey = input === undefined ? 'scratch'
    : input.kind === 'local' ? `local ${input.name} ${selector}`
      : `snapshot ${input.id ?? 'scratch'} ${selector}`;
  const seed = input === undefined ? undefined : async () => {
    const source = await openMountSource(input, deps);
    try {
      const dir = await resolveInRoot(source.root, selector);
      if (!(await fsp.stat(dir).catch(() => undefined))) throw sourceNotFound(selector, m.dest);
      return { dir, release: source.release };
    } catch (err) {
      await source.release();
      throw err;
    }
  };
  const lease = await deps.cacheMounts.acquire({ ...cache, seedKey, seed, step: ctx.step, signal: ctx.signal });
  return {
    oci: { destination: m.dest, type: 'bind', source: path.resolve(lease.path), options: ['rbind', m.readonly ? 'ro' : 'rw'] },
    isDir: true,
    release: async () => lease.release(),
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
