import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BuildError } from '../../solver/build-error';
import { writeFileAtomic } from '../../store/atomic-file';
import type { MetaDb } from '../../store/meta-db';
import { NativeSnapshotter } from '../../store/native-snapshotter';
import { OverlaySnapshotter, probeOverlay } from '../../store/overlay-snapshotter';
import type { Snapshotter } from '../../store/snapshotter';
import type { OverlayXattrNamespace } from '../../store/trusted-xattr-probe';
import type { SnapshotterChoice, SnapshotterName } from './snapshotter-choice';


/** The file in the daemon root that says which snapshotter made it. */
export const SNAPSHOTTER_RECORD = 'snapshotter.json';
const recordSchema = z.object({ snapshotter: z.enum(['overlayfs', 'native']) }).strict();

/** What {@link chooseSnapshotter} decided, and for a fallback why. */
export interface SnapshotterDecision {
  name: SnapshotterName;
  /** auto only: why overlayfs was not taken */
  fallbackReason?: string;
}

/**
 * Which snapshotter a daemon root gets: the one it was made with (`recorded`), refusing a
 * different one asked for by name, since their snapshot directories differ; else the one asked
 * for; `auto` takes overlayfs when `probeOverlay` (a real test mount) succeeds, native
 * otherwise. A forced `overlayfs` that the probe refuses fails here, at start.
 */
export async function chooseSnapshotter(requested: SnapshotterChoice, recorded: SnapshotterName | undefined, probe: () => Promise<void>, root: string): Promise<SnapshotterDecision> {
  if (recorded !== undefined) {
    if (requested !== 'auto' && requested !== recorded) {
      throw new BuildError(
        'failed-precondition',
        `Cannot open ${root} with the ${requested} snapshotter: it was made with the ${recorded} snapshotter (its snapshots are kept differently); start with --oci-worker-snapshotter ${recorded} (or auto), or use another --root`,
      );
    }
    return { name: recorded };
  }
  if (requested === 'native') return { name: 'native' };
  try {
    await probe();
    return { name: 'overlayfs' };
  } catch (err) {
    if (requested === 'overlayfs') {
      throw new BuildError('failed-precondition', `${(err as Error).message}; --oci-worker-snapshotter native (or auto) copies layers instead`, { cause: err });
    }
    return { name: 'native', fallbackReason: (err as Error).message };
  }
}

/** Options of {@link openSnapshotter}. */
export interface OpenSnapshotterOptions {
  root: string;
  requested: SnapshotterChoice;
  /** `user` for buildd --rootless (overlay's userxattr), else `trusted` */
  overlayXattrs: OverlayXattrNamespace;
  logger: Logger;
  /** the daemon's metadata database: the snapshots table lives there, beside the cache records */
  meta: MetaDb;
}

/**
 * Chooses (see chooseSnapshotter), records the choice in the root before anything is made
 * there, logs it, and opens the snapshotter. Lifecycle: once per daemon start.
 */
export async function openSnapshotter(opts: OpenSnapshotterOptions): Promise<Snapshotter> {
  const recorded = await readRecord(opts.root);
  const scratch = path.join(opts.root, 'tmp');
  await fsp.mkdir(scratch, { recursive: true });
  const decision = await chooseSnapshotter(opts.requested, recorded, () => probeOverlay(scratch, opts.overlayXattrs), opts.root);
  const record = path.join(opts.root, SNAPSHOTTER_RECORD);
  // before the first snapshot can exist: a root with snapshots always says whose they are
  if (recorded === undefined) await writeFileAtomic(record, JSON.stringify({ snapshotter: decision.name }) + '\n');
  if (decision.fallbackReason !== undefined) {
    opts.logger.info({ snapshotter: decision.name, reason: decision.fallbackReason }, `snapshotter: native (copies each layer), as overlayfs is not usable here: ${decision.fallbackReason}`);
  } else {
    opts.logger.info({ snapshotter: decision.name }, `snapshotter: ${decision.name}`);
  }
  const common = { logger: opts.logger, overlayXattrs: opts.overlayXattrs, meta: opts.meta };
  try {
    return await (decision.name === 'native' ? NativeSnapshotter.open(opts.root, common) : OverlaySnapshotter.open(opts.root, common));
  } catch (err) {
    // a root that never held a snapshot stays free to be opened with either
    if (recorded === undefined) await fsp.rm(record, { force: true });
    throw err;
  }
}

/** The recorded snapshotter; a root made before the record existed has overlay's `snapshots/`. */
async function readRecord(root: string): Promise<SnapshotterName | undefined> {
  const file = path.join(root, SNAPSHOTTER_RECORD);
  let text: string | undefined;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text === undefined) {
    const old = await fsp.access(path.join(root, 'snapshots')).then(() => true, () => false);
    return old ? 'overlayfs' : undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = recordSchema.safeParse(json);
  if (!parsed.success) throw new BuildError('failed-precondition', `Cannot open ${root}: ${file} does not say which snapshotter made the root (expected {"snapshotter":"overlayfs"} or {"snapshotter":"native"})`);
  return parsed.data.snapshotter;
}
