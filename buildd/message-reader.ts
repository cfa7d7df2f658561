import type { Readable } from 'node:stream';

/**
 * Pulls one message at a time from an object-mode stream (a gRPC call), so the sender is held
 * back by HTTP/2 flow control while we write to disk. Unlike the stream's async iterator, it
 * never destroys the stream when its user stops reading, so the call can still end with a
 * status.
 *
 * Lifecycle: one per call; `next()` resolves `null` once the peer half-closed or the call
 * closed, and keeps doing so.
 */
export class MessageReader {
  private ended = false;
  private wakeUp: (() => void) | undefined;

  constructor(private readonly stream: Readable) {
    stream.on('readable', () => this.wake());
    stream.on('end', () => this.finish());
    stream.on('close', () => this.finish());
  }

  async next(): Promise<unknown | null> {
    for (;;) {
      const msg: unknown = this.stream.read();
      if (msg !== null) return msg;
      if (this.ended || this.stream.readableEnded || this.stream.destroyed) return null;
      await new Promise<void>((resolve) => (this.wakeUp = resolve));
    }
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }
}
