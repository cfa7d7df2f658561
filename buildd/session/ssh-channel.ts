import { Duplex } from 'node:stream';
import { MAX_SSH_CHUNK_BYTES } from '../api/session-limits';
import type { ServerMessage } from '../api/server-messages';

/** Sends one message to the client; resolves once the call has taken it (its backpressure). */
export type SessionSend = (msg: ServerMessage) => Promise<void>;

/**
 * One connection to the client's ssh agent, relayed over the Build call as a numbered channel.
 * Writing to it sends ssh_data to the client (at most 64 KiB each, one at a time, at the call's
 * pace); what the client sends comes out of its readable side. Ending it sends ssh_close; the
 * client's ssh_close ends its readable side.
 *
 * Lifecycle: made by ClientSession.connectSshAgent (which sends ssh_open); lives until both
 * sides ended or it is destroyed; `onGone` then tells the session to forget it.
 */
export class SshChannel extends Duplex {
  private wantsRead: (() => void) | undefined;
  private closeSent = false;

  constructor(
    readonly channel: number,
    private readonly sendToClient: SessionSend,
    private readonly onGone: () => void,
  ) {
    super({ allowHalfOpen: true });
    let ended = false;
    let finished = false;
    const check = (): void => {
      if (ended && finished) this.onGone();
    };
    this.once('end', () => ((ended = true), check()));
    this.once('finish', () => ((finished = true), check()));
    this.once('close', () => this.onGone());
  }

  /** Data from the client; resolves when the reader wants more, so a slow reader holds the session back. */
  fromClient(data: Buffer): Promise<void> {
    if (this.destroyed || this.readableEnded) return Promise.resolve();
    if (this.push(data)) return Promise.resolve();
    return new Promise((resolve) => (this.wantsRead = resolve));
  }

  /** The client's side is done (its agent hung up, or could not be reached: `error`). */
  closedByClient(error: string): void {
    if (error !== '') {
      this.destroy(new Error(error));
      return;
    }
    this.push(null);
  }

  override _read(): void {
    const w = this.wantsRead;
    this.wantsRead = undefined;
    w?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    void this.sendChunks(chunk).then(() => cb(), (err: Error) => cb(err));
  }

  override _final(cb: (err?: Error | null) => void): void {
    void this.sendClose('').then(() => cb(), (err: Error) => cb(err));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.wantsRead?.();
    this.wantsRead = undefined;
    // the client must not keep its agent connection open for a channel that is gone
    void this.sendClose(err ? 'closed by the daemon' : '').catch(() => undefined);
    cb(err);
  }

  private async sendChunks(chunk: Buffer): Promise<void> {
    for (let off = 0; off < chunk.length; off += MAX_SSH_CHUNK_BYTES) {
      await this.sendToClient({ msg: 'ssh_data', ssh_data: { channel: this.channel, data: chunk.subarray(off, off + MAX_SSH_CHUNK_BYTES) } });
    }
  }

  private async sendClose(error: string): Promise<void> {
    if (this.closeSent) return;
    this.closeSent = true;
    await this.sendToClient({ msg: 'ssh_close', ssh_close: { channel: this.channel, error } });
  }
}
