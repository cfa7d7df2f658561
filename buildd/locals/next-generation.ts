import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { FileDigestCache } from '../../store/file-digest-cache';
import type { KeptListings } from '../../store/kept-listings';
import { buildGeneration, type BuildStats, type PlannedEntry } from './generation-builder';
import { canUpdateInPlace, updateGeneration } from './generation-update';
import type { IndexEntry } from './listing-index';
import type { Generation, LocalsStore } from './locals-store';
import { fileDigests, recordReceivedDigests } from './received-files';

/** What a receiver lends to make the next generations of its locals; valid for one sync. */
export interface NextGenerationDeps {
  store: LocalsStore;
  /** the published trees' listings go here (checksums without a walk) */
  listings: KeptListings;
  /** the received files' digests go here (the first COPY reads none of them) */
  digests: FileDigestCache;
  /** the daemon is root: owners are set, and the kept tree may be updated in place */
  chown: boolean;
  signal: AbortSignal;
}

/** One local's sync, once everything arrived. */
export interface NextGenerationInput {
  key: string;
  /** the temp dir the receiver made (received files under `tree/`) */
  tmp: string;
  /** the kept generation this sync compared with, with the caller's lease on it */
  kept?: { generation: Generation; index: ReadonlyMap<string, IndexEntry>; release: () => void };
  entries: readonly PlannedEntry[];
  /** directories the receiver made below `tmp/tree` */
  madeDirs: ReadonlySet<string>;
}

/**
 * Makes and publishes the next generation of a kept local: the kept tree updated in place when
 * no other build reads it (a one-file change costs one rename, not 20,000 links and the old
 * copy's removal; the caller's lease goes with the claim), else built anew beside it. Then the
 * received files' digests are recorded, the generation published, and its listing kept with
 * every file's digest when all are known. On failure the caller removes `tmp`.
 */
export async function publishNextGeneration(deps: NextGenerationDeps, input: NextGenerationInput): Promise<{ generation: Generation; release: () => void; stats: BuildStats }> {
  const { key, tmp, kept, entries } = input;
  const previous = kept === undefined ? undefined : deps.listings.get(kept.generation.tree);
  let stats: BuildStats;
  const claimed = path.join(tmp, 'claimed');
  if (kept && canUpdateInPlace(entries, kept.index, deps.chown) && (await deps.store.claim(key, kept.generation, claimed))) {
    kept.release = () => undefined;
    stats = await updateGeneration({ dir: tmp, claimedTree: path.join(claimed, 'tree'), keptIndex: kept.index, entries, signal: deps.signal });
    await fsp.rm(claimed, { recursive: true, force: true });
  } else {
    stats = await buildGeneration({ dir: tmp, entries, keptTree: kept?.generation.tree, madeDirs: input.madeDirs, chown: deps.chown, signal: deps.signal });
  }
  // the kept tree was updated (its path is gone) or is current no more
  if (kept !== undefined) deps.listings.delete(kept.generation.tree);
  await recordReceivedDigests(deps.digests, path.join(tmp, 'tree'), entries, deps.signal);
  let bytes = 0;
  const index = new Map<string, IndexEntry>();
  for (const p of entries) {
    bytes += p.entry.size;
    index.set(p.entry.path, p.entry);
  }
  const published = await deps.store.publish(key, tmp, { entries: entries.length, bytes }, index);
  const digests = fileDigests(entries, previous?.digests);
  if (digests) deps.listings.set(published.generation.tree, { entries: entries.map((p) => p.entry), digests });
  return { ...published, stats };
}
