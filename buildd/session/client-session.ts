import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { BuildError } from '../../solver/build-error';
import type { SessionAttachables } from '../../solver/worker';
import type { SessionClientMessage } from '../api/messages';
import { SshChannel, type SessionSend } from './ssh-channel';

interface PendingSecret {
  promise: Promise<Buffer | undefined>;
  resolve(value: Buffer | undefined): void;
  reject(err: Error): void;
}

type RegistryLogin = { username: string; password: string };

interface PendingCredentials {
  host: string;
  resolve(value: RegistryLogin | undefined): void;
  reject(err: Error): void;
}

/** Most registries one build may ask the client about: a runaway build cannot flood it. */
const MAX_CREDENTIAL_HOSTS = 64;

/**
 * The daemon's side of a build's session: asks the client for secrets when a step needs them
 * (secret_request → secret_value) and relays ssh agent connections as channels (ssh_open,
 * ssh_data, ssh_close). Nothing the client lends is kept: a secret's value goes to the step
 * that asked and is forgotten; a second step asks again. Registry credentials (when the client
 * forwards them) are asked once per host and kept for this build only.
 *
 * Lifecycle: one per Build call, made when the build starts; `handle` gets each session message
 * the client sends after locals_done; `clientDone` when the client half-closed (old clients
 * do: nothing more can be asked); `close` when the call ends, which rejects every pending
 * request and destroys every channel.
 */
export class ClientSession implements SessionAttachables {
  private readonly pendingSecrets = new Map<string, PendingSecret>();
  private readonly channels = new Map<number, SshChannel>();
  private nextChannel = 1;
  private readonly credentials = new Map<string, Promise<RegistryLogin | undefined>>();
  private readonly pendingCredentials = new Map<string, PendingCredentials>();
  private nextCredentialsId = 1;
  private ended: BuildError | undefined;
  private readonly cacheBlobs = new Map<number, PassThrough>();
  private nextCacheBlobId = 1;

  constructor(
    private readonly send: SessionSend,
    private readonly sshIds: ReadonlySet<string>,
    readonly forwardsCredentials = false,
  ) {}

  registryCredentials(host: string): Promise<RegistryLogin | undefined> {
    if (!this.forwardsCredentials) return Promise.resolve(undefined);
    if (this.ended) return Promise.reject(this.ended);
    let answer = this.credentials.get(host);
    if (!answer) {
      if (this.credentials.size >= MAX_CREDENTIAL_HOSTS) {
        return Promise.reject(new BuildError('invalid-argument', `Cannot ask the client for the credentials of ${host}: this build already asked about ${MAX_CREDENTIAL_HOSTS} registries`));
      }
      const id = String(this.nextCredentialsId++);
      answer = new Promise<RegistryLogin | undefined>((resolve, reject) => this.pendingCredentials.set(id, { host, resolve, reject }));
      // a caller that gives up must not leave the rejection unhandled
      answer.catch(() => undefined);
      this.credentials.set(host, answer);
      this.send({ msg: 'credentials_request', credentials_request: { id, host } }).catch((err: unknown) => {
        const pending = this.pendingCredentials.get(id);
        this.pendingCredentials.delete(id);
        pending?.reject(toSessionError(err, `Cannot ask the client for the credentials of ${host}`));
      });
    }
    return answer;
  }

  secret(id: string, signal: AbortSignal): Promise<Buffer | undefined> {
    if (this.ended) return Promise.reject(this.ended);
    let pending = this.pendingSecrets.get(id);
    if (!pending) {
      // concurrent steps asking for the same id share one request (the client answers once)
      let resolve!: (v: Buffer | undefined) => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<Buffer | undefined>((res, rej) => ((resolve = res), (reject = rej)));
      pending = { promise, resolve, reject };
      this.pendingSecrets.set(id, pending);
      this.send({ msg: 'secret_request', secret_request: { id } }).catch((err: unknown) => this.fail(id, err));
    }
    // each asker gets its own copy, which it may zero once used without harming the others
    const own = pending.promise.then((v) => (v === undefined ? undefined : Buffer.from(v)));
    return raceAbort(own, signal, `Cannot get secret ${id}: the step was cancelled`);
  }

  /**
   * Blob `digest` of the directory of the client's --import-cache entry `entry` (its
   * index.json when `digest` is ''), streamed as the client sends it; destroy it to stop
   * reading (what the client still sends is dropped).
   */
  cacheBlob(entry: number, digest: string): Readable {
    if (this.ended) throw this.ended;
    const id = this.nextCacheBlobId++;
    const stream = new PassThrough();
    this.cacheBlobs.set(id, stream);
    stream.once('close', () => this.cacheBlobs.delete(id));
    this.send({ msg: 'cache_blob_request', cache_blob_request: { id, import: entry, digest } }).catch((err: unknown) =>
      stream.destroy(toSessionError(err, `Cannot ask the client for ${digest || 'the index'} of its cache`)),
    );
    return stream;
  }

  /** One message of an --export-cache type=local to the client; resolves when the call can take more. */
  sendCacheExport(msg: { export: number; digest: string; data: Buffer; eof: boolean; index: boolean; size: number; tag: string }): Promise<void> {
    if (this.ended) return Promise.reject(this.ended);
    return this.send({ msg: 'cache_export', cache_export: msg });
  }

  hasSshAgent(id: string): boolean {
    return this.sshIds.has(id);
  }

  connectSshAgent(id: string): Duplex {
    if (this.ended) throw this.ended;
    if (!this.sshIds.has(id)) throw new BuildError('not-found', `Cannot connect to ssh agent ${id}: the client forwards no --ssh ${id}`);
    const channel = this.nextChannel++;
    const ch = new SshChannel(channel, this.send, () => this.channels.delete(channel));
    this.channels.set(channel, ch);
    this.send({ msg: 'ssh_open', ssh_open: { channel, id } }).catch((err: unknown) => ch.destroy(err as Error));
    return ch;
  }

  /** One session message from the client; resolves when the next one may be read (backpressure). */
  async handle(msg: SessionClientMessage): Promise<void> {
    switch (msg.msg) {
      case 'secret_value': {
        const { id, data, not_found } = msg.secret_value;
        const pending = this.pendingSecrets.get(id);
        if (!pending) throw new BuildError('invalid-argument', `Cannot accept secret ${id}: the daemon did not ask for it`);
        this.pendingSecrets.delete(id);
        pending.resolve(not_found ? undefined : data);
        return;
      }
      case 'credentials_value': {
        const { id, username, secret, not_found, error } = msg.credentials_value;
        const pending = this.pendingCredentials.get(id);
        if (!pending) throw new BuildError('invalid-argument', `Cannot accept credentials ${id}: the daemon did not ask for them`);
        this.pendingCredentials.delete(id);
        if (error) pending.reject(new BuildError('failed-precondition', `Cannot get the client's credentials for ${pending.host}: ${error}`));
        else pending.resolve(not_found ? undefined : { username, password: secret });
        return;
      }
      case 'ssh_data':
        // data for a channel the daemon already closed is in flight, not an error
        await this.channels.get(msg.ssh_data.channel)?.fromClient(msg.ssh_data.data);
        return;
      case 'ssh_close':
        this.channels.get(msg.ssh_close.channel)?.closedByClient(msg.ssh_close.error);
        return;
      case 'cache_blob': {
        const { id, data, eof, error } = msg.cache_blob;
        // data for a blob the daemon stopped reading is in flight, not an error
        const stream = this.cacheBlobs.get(id);
        if (!stream) return;
        if (error) {
          stream.destroy(new BuildError('failed-precondition', `Cannot read the client's cache: ${error}`));
          return;
        }
        if (data.length > 0 && !stream.write(data)) await new Promise<void>((resolve) => {
          const done = (): void => {
            stream.off('drain', done);
            stream.off('close', done);
            resolve();
          };
          stream.on('drain', done);
          stream.on('close', done);
        });
        if (eof) stream.end();
        return;
      }
    }
  }

  /** The client half-closed: it can answer nothing more; channels it had end. */
  clientDone(): void {
    this.end(new BuildError('failed-precondition', 'Cannot ask the client: it closed its session (an older buildctl?)'));
  }

  /** The call ended: pending requests reject, channels are destroyed. Idempotent. */
  close(reason?: BuildError): void {
    this.end(reason ?? new BuildError('cancelled', 'Cannot ask the client: the build has ended'));
  }

  private end(reason: BuildError): void {
    if (this.ended) return;
    this.ended = reason;
    for (const p of this.pendingSecrets.values()) p.reject(reason);
    this.pendingSecrets.clear();
    for (const p of this.pendingCredentials.values()) p.reject(reason);
    this.pendingCredentials.clear();
    // what the client lent is forgotten with the build
    this.credentials.clear();
    for (const ch of [...this.channels.values()]) ch.destroy();
    this.channels.clear();
    for (const stream of [...this.cacheBlobs.values()]) stream.destroy(reason);
    this.cacheBlobs.clear();
  }

  private fail(id: string, err: unknown): void {
    const pending = this.pendingSecrets.get(id);
    if (!pending) return;
    this.pendingSecrets.delete(id);
    pending.reject(toSessionError(err, `Cannot ask the client for secret ${id}`));
  }
}

function toSessionError(err: unknown, what: string): BuildError {
  return err instanceof BuildError ? err : new BuildError('cancelled', `${what}: ${(err as Error).message}`);
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal, message: string): Promise<T> {
  if (signal.aborted) return Promise.reject(new BuildError('cancelled', message));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new BuildError('cancelled', message));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}
