import { Writable } from 'node:stream';
import type { StepLog } from '../../solver/worker';

/** A Writable that forwards a step's stdout or stderr to its progress log, chunk by chunk. */
export function stepLogStream(log: StepLog, stream: 1 | 2): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      log.write(stream, Buffer.from(chunk));
      done();
    },
  });
}
