import { parentPort, workerData } from 'node:worker_threads';
import { toBuildError } from '../solver/build-error';
import { localIgnore, walkContext, type WalkEntry } from './context-walk';
import { encodeListing } from './listing-encoder';
import { BATCH_BYTES, BATCH_ENTRIES, listingEntryBytes } from './listing-entry';
import { walkedFiles } from './listed-files';
import { waitForRoom, type WalkJob, type WalkMessage, type WireEntry } from './walk-messages';

/**
 * The worker thread of a PrefetchedWalk: walks one local with its ignore rules and posts it in
 * batches (in `listing` mode each as its encoded listing, see encodeListing, and its files with
 * content; else the entries), at most AHEAD_BATCHES ahead of what the main thread has taken (it
 * blocks on the shared counter until then), so memory stays flat whatever the context.
 */
async function run(): Promise<void> {
  const port = parentPort;
  if (port === null) return;
  const job = workerData as WalkJob;
  const taken = new Int32Array(job.taken);
  let posted = 0;
  const post = (msg: WalkMessage): void => port.postMessage(msg);
  try {
    const ignore = await localIgnore(job.name, job.locals, job.filename);
    let entries: WalkEntry[] = [];
    let bytes = 0;
    const flush = (): void => {
      waitForRoom(taken, posted);
      if (job.mode === 'listing') post({ kind: 'listing', listing: encodeListing(job.name, entries), files: walkedFiles(entries) });
      else post({ kind: 'entries', entries: entries.map((e): WireEntry => ({ ...e, xattrs: [...e.xattrs] })) });
      posted++;
      entries = [];
      bytes = 0;
    };
    for (const e of walkContext(job.locals[job.name] as string, ignore)) {
      entries.push(e);
      bytes += listingEntryBytes(e);
      if (entries.length >= BATCH_ENTRIES || bytes >= BATCH_BYTES) flush();
    }
    if (entries.length > 0) flush();
    post({ kind: 'done' });
  } catch (err) {
    const be = toBuildError(err);
    post({ kind: 'error', code: be.code, message: be.message });
  }
}

void run();
