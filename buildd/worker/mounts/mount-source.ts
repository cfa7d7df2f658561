import { mkdtemp, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import type { OpResult } from '../../../solver/worker';
import type { Snapshotter } from '../../../store/snapshotter';

/** A mount input opened on the host; `release()` unmounts or removes what was made for it. */
export interface OpenedSource {
  root: string;
  release(): Promise<void>;
}

/**
 * Opens a mount's input as a host directory: a client directory as it is, a committed snapshot
 * as a read-only view (or, `writable`, as a throwaway active snapshot on top of it, whose
 * writes vanish with `release`), scratch as an empty temporary directory.
 */
export async function openMountSource(input: OpResult | undefined, deps: { snapshotter: Snapshotter; tmpDir: string }, writable = false): Promise<OpenedSource> {
  if (input?.kind === 'local') return { root: input.dir, release: async () => undefined };
  if (input?.kind === 'snapshot' && input.id !== null) {
    if (!writable) {
      const view = await deps.snapshotter.mountView(input.id);
      return { root: view.path, release: () => view.release() };
    }
    const active = await deps.snapshotter.prepare(input.id);
    try {
      return { root: await active.mount(), release: () => active.release() };
    } catch (err) {
      await active.release();
      throw err;
    }
  }
  const dir = await mkdtemp(path.join(deps.tmpDir, 'mount-scratch-'));
  return { root: dir, release: () => rm(dir, { recursive: true, force: true }) };
}

/** The error for a mount source path that is not in its input. */
export function sourceNotFound(selector: string, dest: string): BuildError {
  return new BuildError('not-found', `Cannot mount ${selector} at ${dest}: ${selector} not found in the mount's source`);
}
