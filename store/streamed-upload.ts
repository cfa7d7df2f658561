import { PassThrough } from 'node:stream';
import { BuildError } from '../solver/build-error';
import type { BlobTee, BlobTeeSink } from './blob-tee';
import type { BlobInfo } from './content-store';
import type { ImageRef } from './image-ref';
import { discard, header, type HttpResponse } from './registry-http';
import type { RegistryTransport } from './registry-transport';

/** How long ending an abandoned upload session may take. */
const FORGET_TIMEOUT_MS = 10_000;

/**
 * Uploads blobs to `ref`'s repository while they are made, before their digest is known:
 * POST, one PATCH streaming the bytes (chunked), then PUT `?digest=` with no body. This is
 * Docker's streamed upload, as dockerd pushes a layer while it compresses it; distribution,
 * Harbor, GHCR, ECR and Docker Hub take it. A push otherwise compresses every layer into
 * the content store first and uploads afterwards.
 *
 * Best effort by design: whatever goes wrong (a registry refusing the PATCH, a 401 that would
 * need the stream sent again, a dropped connection) only leaves that blob out of `uploaded`,
 * and the ordinary push (HEAD, then a monolithic PUT from the store) sends it after.
 *
 * Lifecycle: one per push, given to assembleImage as its tee; then `uploaded` goes to the push.
 */
export class StreamedUploads implements BlobTee {
  /** digests whose upload the registry committed (201 to the closing PUT) */
  readonly uploaded = new Set<string>();
  private readonly scope: string;

  constructor(
    private readonly transport: RegistryTransport,
    private readonly ref: ImageRef,
    private readonly signal?: AbortSignal,
  ) {
    this.scope = `repository:${ref.repository}:pull,push`;
  }

  async open(): Promise<BlobTeeSink | undefined> {
    const start = this.transport.url(this.ref.registry, `${this.ref.repository}/blobs/uploads/`);
    const post = await this.transport.send(this.ref, 'push', this.scope, start, { method: 'POST', headers: { 'content-length': '0' }, signal: this.signal });
    await discard(post);
    const location = header(post, 'location');
    if (post.statusCode !== 202 || !location) return undefined;
    // Location may be relative or absolute and carries state in its query (e.g. _state): keep it.
    let session: URL;
    try {
      session = new URL(location, start);
    } catch {
      return undefined;
    }
    const body = new PassThrough();
    const stop = new AbortController();
    const signal = this.signal ? AbortSignal.any([this.signal, stop.signal]) : stop.signal;
    let sent = false;
    const patching = this.transport.send(this.ref, 'push', this.scope, session, {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream' },
      body: async () => {
        // a stream goes once: a request that would need it again (after a 401) fails instead
        if (sent) throw new BuildError('unavailable', 'Cannot send a streamed upload twice');
        sent = true;
        return body;
      },
      signal,
    });
    // An answer before the whole body went is a refusal: nobody reads the body any more, and
    // the writer waiting for its drain must not wait forever.
    const settled = patching.then(
      (res) => {
        if (!body.writableFinished) body.destroy();
        return res;
      },
      (err: unknown) => {
        body.destroy();
        throw err;
      },
    );
    settled.catch(() => undefined);
    const cancel = (): Promise<void> => {
      stop.abort();
      body.destroy();
      return settled.then((res) => this.forget(session, res), () => this.forget(session));
    };
    return {
      body,
      done: async (blob) => {
        try {
          if (await this.commit(session, await settled, blob)) return;
        } catch {
          // what the registry did not commit, the ordinary push sends
        }
        await cancel();
      },
      abort: () => void cancel(),
    };
  }

  /** Closes the upload as `blob` once the PATCH took every byte; false when the registry did not. */
  private async commit(session: URL, patched: HttpResponse, blob: BlobInfo): Promise<boolean> {
    await discard(patched);
    if (patched.statusCode !== 202) return false;
    const put = new URL(header(patched, 'location') ?? session.href, session);
    put.searchParams.append('digest', blob.digest);
    const res = await this.transport.send(this.ref, 'push', this.scope, put, { method: 'PUT', headers: { 'content-length': '0' }, signal: this.signal });
    await discard(res);
    if (res.statusCode !== 201) return false;
    this.uploaded.add(blob.digest);
    this.transport.transferred('push', blob.size);
    return true;
  }

  /** Ends an upload session we give up on, so the registry need not wait for its timeout. */
  private async forget(session: URL, res?: HttpResponse): Promise<void> {
    if (res) await discard(res).catch(() => undefined);
    try {
      // bounded: a cancelled build does not wait on a registry that does not answer
      await discard(await this.transport.send(this.ref, 'push', this.scope, session, { method: 'DELETE', signal: AbortSignal.timeout(FORGET_TIMEOUT_MS) }));
    } catch {
      // the registry drops the session itself after a while
    }
  }
}
