import type { Readable } from 'node:stream';
import { Dispatcher, request } from 'undici';
import { BuildError } from '../solver/build-error';
import { untrustedCertificate } from './registry-hosts';

/** What a request sends: a body is a factory so that a request can be replayed after a 401. */
export interface HttpRequest {
  method: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: () => Promise<Readable | Buffer | string>;
  signal?: AbortSignal;
}

/** An undici response: the caller must consume or `discard` its body. */
export type HttpResponse = Dispatcher.ResponseData;

/** One response header as a string (the first one when repeated). */
export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Sends one request, mapping connection failures to `unavailable`, aborts to `cancelled` and a
 * certificate that did not verify to `failed-precondition` saying how to trust it, all naming
 * `registry` so that the person reading knows which host failed. `action` (`pull busybox`)
 * says what failed when the certificate was refused; without it, reaching the registry did.
 */
export async function sendRequest(dispatcher: Dispatcher, url: URL, req: HttpRequest, registry: string, action?: string): Promise<HttpResponse> {
  const body = req.body ? await req.body() : undefined;
  try {
    return await request(url, {
      method: req.method,
      headers: req.headers,
      body,
      signal: req.signal,
      dispatcher,
    });
  } catch (err) {
    if (body && typeof body === 'object' && 'destroy' in body) body.destroy();
    if (req.signal?.aborted || (err instanceof Error && err.name === 'AbortError')) {
      throw new BuildError('cancelled', `Cannot talk to registry ${registry}: the request was cancelled`, { cause: err });
    }
    if (err instanceof BuildError) throw err;
    const untrusted = untrustedCertificate(err);
    if (untrusted !== undefined) {
      // Settings are per host (host[:port]) as connected to: the token server's may differ.
      const key = JSON.stringify(url.host);
      throw new BuildError('failed-precondition',
        `Cannot ${action ?? `reach registry ${registry}`}: the certificate of ${url.host} is not trusted (${untrusted}); ` +
        `give the CA that signed it in registry.${key}.ca of the daemon config, or skip verification with registry.${key}.insecure`,
        { cause: err });
    }
    const detail = err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : String(err);
    throw new BuildError('unavailable', `Cannot reach registry ${registry}: ${detail} (${url.origin})`, { cause: err });
  }
}

/** Reads a small body (manifest, config, token, error) refusing more than `max` bytes. */
export async function readCapped(res: HttpResponse, max: number, what: string): Promise<Buffer> {
  const declared = Number(header(res, 'content-length'));
  if (Number.isFinite(declared) && declared > max) {
    res.body.destroy();
    throw new BuildError('invalid-argument', `Cannot read ${what}: ${declared} bytes is over the ${max} byte limit`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    const buf = chunk as Buffer;
    total += buf.length;
    if (total > max) {
      res.body.destroy();
      throw new BuildError('invalid-argument', `Cannot read ${what}: more than the ${max} byte limit`);
    }
    chunks.push(buf);
  }
  // Bounded by `max` (a few MiB at most): this is never a layer.
  return Buffer.concat(chunks, total);
}

/** Throws away a body we do not need, so that the connection goes back to the pool. */
export async function discard(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 });
  } catch {
    // A body that fails while being thrown away has nothing left to tell us.
  }
}

/** Parses JSON text, throwing invalid-argument naming `what`. */
export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new BuildError('invalid-argument', `Cannot parse ${what}: not JSON`);
  }
}
