import { BuildError } from '../solver/build-error';

/** A FileRequest as the daemon sends it. */
export interface FileRequest {
  local: string;
  paths: string[];
  done: boolean;
}

/**
 * The daemon's file requests, from the call's reader to the uploader, in order.
 *
 * Lifecycle: made per build; `push` for each request; `close()` when the call ends (a pending
 * `next()` then rejects, so an uploader waiting for requests never hangs).
 */
export class FileRequestQueue {
  private readonly items: FileRequest[] = [];
  private waiter: { resolve(r: FileRequest): void; reject(err: Error): void } | undefined;
  private closed: Error | undefined;

  push(r: FileRequest): void {
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w.resolve(r);
    else this.items.push(r);
  }

  next(): Promise<FileRequest> {
    const r = this.items.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  close(): void {
    this.closed ??= new BuildError('cancelled', 'Cannot send locals: the call has ended');
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.closed);
  }
}
