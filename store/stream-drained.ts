/** What drained needs of a stream: Node's Writable and streamx's (tar-stream's extract) both are. */
export interface DrainableStream {
  readonly destroyed: boolean;
  on(event: 'drain' | 'error' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'error' | 'close', listener: () => void): unknown;
}

/**
 * Resolves when `stream` can take more writes ('drain'), or when it never will (it errored or
 * closed, or is destroyed already): a writer waiting on a dead stream must not hang. Never
 * rejects: the caller learns of a failure where it watches the stream's outcome.
 */
export function drained(stream: DrainableStream): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('error', done);
    stream.on('close', done);
  });
}
