import type { Writable } from 'node:stream';
import type { BlobInfo } from './content-store';
import { drained } from './stream-drained';

/**
 * A second reader of a blob while it is made: a push that uploads a layer as it is compressed
 * instead of after (the store and the upload see the same bytes). Optional by design: when the
 * sink fails, the blob is still made and stored, and the caller uploads it the ordinary way.
 */
export interface BlobTee {
  /**
   * A sink for the blob about to be made, or undefined to make it without one (the upload
   * could not start). Called once per blob, before its first byte.
   */
  open(): Promise<BlobTeeSink | undefined>;
}

/**
 * One blob's sink. Lifecycle: bytes are written to `body` with its backpressure, then `body`
 * is ended and `done` called with what the store made; or, when the blob is not made (the
 * export failed or was cancelled), `abort`. A sink that errors is abandoned where it stands
 * and still gets `abort`: its failure is never the blob's.
 */
export interface BlobTeeSink {
  readonly body: Writable;
  /** Completes the upload as `blob`; resolves either way (a failed upload is left to the ordinary push). */
  done(blob: BlobInfo): Promise<void>;
  abort(reason: unknown): void;
}

/**
 * Passes `source` through unchanged while writing each chunk to `sink` as well, waiting for
 * the sink's drain; ends the sink after the last chunk. A sink that errors or closes early is
 * dropped (`failed` says so) and the stream goes on without it.
 */
export async function* teeInto(source: AsyncIterable<Buffer>, sink: Writable, state: { failed?: unknown }): AsyncGenerator<Buffer> {
  const onError = (err: unknown): void => {
    state.failed ??= err;
  };
  sink.on('error', onError);
  try {
    for await (const chunk of source) {
      if (state.failed === undefined && !sink.destroyed) {
        if (!sink.write(chunk)) await drained(sink);
      }
      yield chunk;
    }
    if (state.failed === undefined && !sink.destroyed) sink.end();
  } finally {
    if (!sink.writableEnded && !sink.destroyed) sink.destroy();
  }
}
