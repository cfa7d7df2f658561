import { promises as fsp } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import * as path from 'node:path';
import type { ExecMount } from '../../../solver/op';
import type { OpResult } from '../../../solver/worker';
import { resolveInRoot } from '../../../store/safe-path';
import type { Snapshotter } from '../../../store/snapshotter';
import { TreeCopier } from '../../../store/tree-copier';
import type { OciMount } from '../oci-spec';
import { openMountSource, sourceNotFound } from './mount-source';

/** A mount ready for the container; `release()` after the container is deleted. */
export interface PreparedMount {
  oci: OciMount;
  /** whether the target is a directory (made in the rootfs before the run) or a file (runc's stub) */
  isDir: boolean;
  release(): Promise<void>;
}

/**
 * `RUN --mount=type=bind`: `selector` of the input (the context, a stage or an image), resolved
 * inside that input with symlinks followed inside it, bind-mounted read-only; with `rw`
 * (readonly false) the step writes to a throwaway copy: an active snapshot on the stage or
 * image (released, never committed), or a copy of a client directory under `tmpDir`, so the
 * client's files and the committed snapshots never change.
 */
export async function prepareBindMount(m: ExecMount, input: OpResult | undefined, deps: { snapshotter: Snapshotter; tmpDir: string }): Promise<PreparedMount> {
  const selector = m.selector ?? '/';
  const copyLocal = !m.readonly && input?.kind === 'local';
  const source = await openMountSource(input, deps, !m.readonly && !copyLocal);
  const releases: Array<() => Promise<void>> = [source.release];
  const release = async (): Promise<void> => {
    for (const r of releases.splice(0).reverse()) await r();
  };
  try {
    let hostPath = await resolveInRoot(source.root, selector);
    const st = await fsp.stat(hostPath).catch(() => undefined);
    if (!st) throw sourceNotFound(selector, m.dest);
    if (copyLocal) {
      const dir = await mkdtemp(path.join(deps.tmpDir, 'bind-rw-'));
      releases.push(() => rm(dir, { recursive: true, force: true }));
      const copy = path.join(dir, 'src');
      if (st.isDirectory()) {
        await fsp.mkdir(copy);
        await TreeCopier.copy({ owner: null }, (c) => c.copyChildren(hostPath, copy));
        await fsp.lchown(copy, st.uid, st.gid);
        await fsp.chmod(copy, st.mode & 0o7777);
      } else {
        const lst = await fsp.lstat(hostPath);
        await TreeCopier.copy({ owner: null }, (c) => c.copyEntry(hostPath, copy, lst));
      }
      hostPath = copy;
    }
    return {
      oci: { destination: m.dest, type: 'bind', source: hostPath, options: ['rbind', m.readonly ? 'ro' : 'rw'] },
      isDir: st.isDirectory(),
      release,
    };
  } catch (err) {
    await release();
    throw err;
  }
}
