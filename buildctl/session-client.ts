import type * as net from 'node:net';
import type { Writable } from 'node:stream';
import { MAX_SSH_CHUNK_BYTES } from '../buildd/api/session-limits';
import type { ServerMessage } from '../buildd/api/server-messages';
import { BuildError, toBuildError } from '../solver/build-error';
import type { CredentialSource } from '../store/docker-credentials';
import type { SecretStore } from './secret-store';
import type { SshAgents } from './ssh-agents';
import type { LocalCacheDirs } from './local-cache-dirs';

/** Holds back the daemon's stream while a local socket catches up. */
export interface CallFlow {
  pause(): void;
  resume(): void;
}

/**
 * buildctl's side of the session: answers the daemon's secret requests from the SecretStore,
 * its requests for registry credentials from the user's docker config (when given), and relays each ssh channel the daemon opens to a connection to the agent, with
 * backpressure both ways (an agent that reads slowly pauses the call; data from the agent
 * waits for the call's 'drain').
 *
 * Lifecycle: one per build, after the locals are sent; `handle` for every daemon message
 * (false when it is not a session message); `close` when the call ends.
 */
export class SessionClient {
  private readonly conns = new Map<number, net.Socket>();
  private closed = false;

  constructor(
    private readonly call: Writable,
    private readonly secrets: SecretStore,
    private readonly agents: SshAgents,
    private readonly flow: CallFlow,
    private readonly fail: (err: BuildError) => void,
    private readonly registryAuth?: CredentialSource,
    private readonly cacheDirs?: LocalCacheDirs,
  ) {}

  handle(m: ServerMessage): boolean {
    switch (m.msg) {
      case 'secret_request':
        void this.answerSecret(m.secret_request.id);
        return true;
      case 'credentials_request':
        void this.answerCredentials(m.credentials_request.id, m.credentials_request.host);
        return true;
      case 'ssh_open':
        this.open(m.ssh_open.channel, m.ssh_open.id);
        return true;
      case 'ssh_data': {
        const sock = this.conns.get(m.ssh_data.channel);
        if (sock && !sock.write(m.ssh_data.data)) {
          this.flow.pause();
          sock.once('drain', () => this.flow.resume());
        }
        return true;
      }
      case 'ssh_close':
        this.conns.get(m.ssh_close.channel)?.end();
        return true;
      case 'cache_blob_request': {
        const { id, import: entry, digest } = m.cache_blob_request;
        const dirs = this.cacheDirs;
        if (!dirs) return true;
        void dirs.answer(id, entry, digest, (msg) => this.send({ cache_blob: msg })).catch(() => undefined);
        return true;
      }
      case 'cache_export': {
        const dirs = this.cacheDirs;
        if (!dirs) {
          this.fail(new BuildError('internal', 'Cannot write the cache: no --export-cache type=local was given'));
          return true;
        }
        // one message written before the next is read: blobs arrive in order
        this.flow.pause();
        void dirs.write(m.cache_export).then(
          () => this.flow.resume(),
          (err: unknown) => this.fail(toBuildError(err, 'invalid-argument')),
        );
        return true;
      }
      default:
        return false;
    }
  }

  close(): void {
    this.closed = true;
    void this.cacheDirs?.close();
    for (const sock of this.conns.values()) sock.destroy();
    this.conns.clear();
  }

  private async answerSecret(id: string): Promise<void> {
    let value: Buffer | undefined;
    try {
      value = await this.secrets.get(id);
      await this.send({ secret_value: { id, data: value ?? Buffer.alloc(0), not_found: value === undefined } });
    } catch (err) {
      this.fail(toBuildError(err, 'invalid-argument'));
    } finally {
      value?.fill(0);
    }
  }

  /** A lookup that fails is told to the daemon, whose pull or push then fails saying why. */
  private async answerCredentials(id: string, host: string): Promise<void> {
    const answer = { id, username: '', secret: '', not_found: false, error: '' };
    try {
      const creds = await this.registryAuth?.lookup(host);
      if (creds) Object.assign(answer, { username: creds.username, secret: creds.password });
      else answer.not_found = true;
    } catch (err) {
      answer.error = (err as Error).message || String(err);
    }
    await this.send({ credentials_value: answer }).catch(() => undefined);
  }

  private open(channel: number, id: string): void {
    if (this.conns.has(channel)) return this.fail(new BuildError('internal', `Cannot open ssh channel ${channel}: it is already open`));
    const sock = this.agents.connect(id);
    if (!sock) {
      void this.send({ ssh_close: { channel, error: `no ssh agent ${id} is forwarded` } }).catch(() => undefined);
      return;
    }
    this.conns.set(channel, sock);
    let closeSent = false;
    const sendClose = (error: string): void => {
      if (closeSent) return;
      closeSent = true;
      void this.send({ ssh_close: { channel, error } }).catch(() => undefined);
    };
    sock.on('data', (data: Buffer) => {
      // paused while the call takes the chunks: 'end' cannot overtake data still being sent
      sock.pause();
      void this.sendChunks(channel, data).then(() => sock.resume(), () => sock.destroy());
    });
    sock.once('end', () => sendClose(''));
    sock.once('error', (err) => sendClose(`Cannot reach ssh agent ${id}: ${err.message}`));
    sock.once('close', () => {
      sendClose('');
      this.conns.delete(channel);
    });
  }

  private async sendChunks(channel: number, data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += MAX_SSH_CHUNK_BYTES) {
      await this.send({ ssh_data: { channel, data: data.subarray(off, off + MAX_SSH_CHUNK_BYTES) } });
    }
  }

  /** Writes one message; resolves when the call can take more. */
  private send(msg: object): Promise<void> {
    if (this.closed || this.call.destroyed || this.call.writableEnded) return Promise.reject(new BuildError('cancelled', 'Cannot answer the daemon: the call has ended'));
    return new Promise((resolve) => {
      if (this.call.write(msg)) return resolve();
      const done = (): void => {
        this.call.off('drain', done);
        this.call.off('close', done);
        resolve();
      };
      this.call.on('drain', done);
      this.call.on('close', done);
    });
  }
}
