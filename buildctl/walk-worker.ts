import { parentPort, workerData } from 'node:worker_threads';
import { toBuildError } from '../solver/build-error';
import { localIgnore, walkContext } from './context-walk';
import { AHEAD_BATCHES, WALK_BATCH, type WalkJob, type WalkMessage, type WireEntry } from './walk-messages';

/**
 * The worker thread of a PrefetchedWalk: walks one local with its ignore rules and posts its
 * entries in batches, at most AHEAD_BATCHES ahead of what the main thread has taken (it blocks
 * on the shared counter until then), so memory stays flat whatever the context.
 */
async function run(): Promise<void> {
  const port = parentPort;
  if (port === null) return;
  const job = workerData as WalkJob;
  const taken = new Int32Array(job.taken);
  let posted = 0;
  const post = (msg: WalkMessage): void => {
    port.postMessage(msg);
  };
  try {
    const ignore = await localIgnore(job.name, job.locals, job.filename);
    let batch: WireEntry[] = [];
    const flush = (): void => {
      // wait until the main thread has taken enough: a bounded queue between the threads
      for (let seen = Atomics.load(taken, 0); posted - seen >= AHEAD_BATCHES; seen = Atomics.load(taken, 0)) Atomics.wait(taken, 0, seen, 1000);
      post({ kind: 'entries', entries: batch });
      posted++;
      batch = [];
    };
    for (const e of walkContext(job.locals[job.name] as string, ignore)) {
      batch.push({ ...e, xattrs: [...e.xattrs] });
      if (batch.length >= WALK_BATCH) flush();
    }
    if (batch.length > 0) flush();
    post({ kind: 'done' });
  } catch (err) {
    const be = toBuildError(err);
    post({ kind: 'error', code: be.code, message: be.message });
  }
}

void run();
