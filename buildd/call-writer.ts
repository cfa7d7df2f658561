import type { Writable } from 'node:stream';
import { BuildError } from '../solver/build-error';
import type { ServerMessage } from './api/server-messages';

/** Log bytes that may wait for a slow client before further logs are dropped. */
export const MAX_QUEUED_LOG_BYTES = 8 * 1024 * 1024;

interface Item {
  msg: ServerMessage;
  logBytes: number;
  done?: { resolve(): void; reject(err: Error): void };
}

/**
 * Writes messages to one Build call in order, honouring the call's backpressure ('drain').
 *
 * Lifecycle: made when a build starts; `close()` when the call is cancelled or finished, after
 * which `send` rejects and `progress` is a no-op.
 *
 * `send` (results, export chunks) resolves once the message is handed to the call, so its
 * caller slows to the client's pace. `progress` cannot wait (the builder reports
 * synchronously), so log messages beyond MAX_QUEUED_LOG_BYTES are dropped and the client gets
 * one warning saying so; vertex updates and warnings are small and always kept.
 */
export class CallWriter {
  private readonly queue: Item[] = [];
  private queuedLogBytes = 0;
  private droppedLogs = 0;
  private pumping = false;
  private closed = false;
  private wakeDrain: (() => void) | undefined;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(private readonly call: Writable) {
    call.on('drain', () => this.wake());
  }

  send(msg: ServerMessage): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ msg, logBytes: 0, done: { resolve, reject } });
      void this.pump();
    });
  }

  progress(msg: ServerMessage): void {
    if (this.closed) return;
    const logBytes = msg.msg === 'log' ? msg.log.data.length : 0;
    if (logBytes > 0 && this.queuedLogBytes + logBytes > MAX_QUEUED_LOG_BYTES) {
      this.droppedLogs++;
      return;
    }
    this.queuedLogBytes += logBytes;
    this.queue.push({ msg, logBytes });
    void this.pump();
  }

  /** Resolves when everything queued so far has been handed to the call (or the writer closed). */
  flush(): Promise<void> {
    if (!this.pumping && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const item of this.queue.splice(0)) item.done?.reject(closedError());
    this.queuedLogBytes = 0;
    this.wake();
    this.notifyIdle();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closed) {
        if (this.queue.length === 0 && this.droppedLogs > 0) {
          const n = this.droppedLogs;
          this.droppedLogs = 0;
          this.queue.push({ msg: { msg: 'warning', warning: { message: `Cannot show ${n} log messages: the client reads too slowly` } }, logBytes: 0 });
        }
        const item = this.queue.shift();
        if (!item) break;
        this.queuedLogBytes -= item.logBytes;
        const ok = this.call.write(item.msg);
        item.done?.resolve();
        if (!ok) await new Promise<void>((resolve) => (this.wakeDrain = resolve));
      }
    } finally {
      this.pumping = false;
      this.notifyIdle();
    }
  }

  private wake(): void {
    const w = this.wakeDrain;
    this.wakeDrain = undefined;
    w?.();
  }

  private notifyIdle(): void {
    if (this.pumping || (this.queue.length > 0 && !this.closed)) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

function closedError(): BuildError {
  return new BuildError('cancelled', 'Cannot send to the client: the call has ended');
}
