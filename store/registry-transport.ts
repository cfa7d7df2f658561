import { Agent, Dispatcher } from 'undici';
import { z } from 'zod';
import { BuildError, BuildErrorCode } from '../solver/build-error';
import type { CredentialSource } from './docker-credentials';
import type { ImageRef } from './image-ref';
import { RegistryAuth } from './registry-auth';
import { RegistryHostConfig, RegistryHosts, apiHost, httpsNotSpoken } from './registry-hosts';
import { HttpRequest, HttpResponse, discard, header, readCapped, sendRequest } from './registry-http';

/** Options shared by everything that talks to registries. */
export interface RegistryTransportOptions {
  credentials?: CredentialSource;
  /**
   * Per registry (host[:port]): plain HTTP, unverified TLS, extra CAs (`registry` of the daemon
   * config). `reg` and `reg:443` name the same host (see hostKey).
   */
  registries?: Readonly<Record<string, RegistryHostConfig>>;
  /** Registries (host[:port]) treated as `insecure` on top of `registries` (`registry.insecure=true` of an output). */
  insecureRegistries?: readonly string[];
  /**
   * The undici dispatcher to send through (tests wrap it to count requests). It makes its own
   * connections: the TLS settings of `registries` (ca, insecure) do not apply to it.
   */
  dispatcher?: Dispatcher;
  /** Told the size of each blob pulled or pushed in full (a mount or a blob the registry has moves nothing). */
  onBlobBytes?: (direction: 'pull' | 'push', bytes: number) => void;
}

const errorBodySchema = z.object({
  errors: z.array(z.object({ code: z.string().optional(), message: z.string().optional() }).passthrough()).optional(),
}).passthrough();

/**
 * HTTP to registries with the auth dance: sends a request, and on a 401 learns the challenge,
 * gets a token (or uses Basic) and replays it once. Each host gets its scheme and TLS settings
 * (plain HTTP, extra CAs, no verification) from RegistryHosts.
 *
 * Lifecycle: one per RegistryClient; `close` releases the dispatcher it created (not one it
 * was given).
 */
export class RegistryTransport {
  readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: Agent | undefined;
  private readonly auth: RegistryAuth;
  private readonly hosts: RegistryHosts;
  /** Bodies sendOnce already read (a bare 400), for `fail` to quote. */
  private readonly readBodies = new WeakMap<HttpResponse, Buffer>();

  constructor(private readonly opts: RegistryTransportOptions = {}) {
    // Last, so that `insecure` wins over the settings of every key naming the same host.
    this.hosts = new RegistryHosts([
      ...Object.entries(opts.registries ?? {}),
      ...(opts.insecureRegistries ?? []).map((host): [string, RegistryHostConfig] => [host, { insecure: true }]),
    ]);
    this.ownDispatcher = opts.dispatcher ? undefined : new Agent({ connections: 8, connect: this.hosts.connect });
    this.dispatcher = opts.dispatcher ?? (this.ownDispatcher as Agent);
    this.auth = new RegistryAuth(this.dispatcher, opts.credentials);
  }

  /** Reports a blob moved in full (RegistryTransportOptions.onBlobBytes). */
  transferred(direction: 'pull' | 'push', bytes: number): void {
    this.opts.onBlobBytes?.(direction, bytes);
  }

  /** `http(s)://host/v2/<path>` for a registry. */
  url(registry: string, path: string): URL {
    return new URL(`${this.hosts.scheme(registry)}://${apiHost(registry)}/v2/${path}`);
  }

  /**
   * Sends `req` to `url` authorized for `scope` (`repository:<name>:pull[,push]`). Any status
   * comes back except a 401 after the retry, which becomes `unauthenticated`.
   */
  async send(ref: ImageRef, action: string, scope: string, url: URL, req: HttpRequest): Promise<HttpResponse> {
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.auth.authorization(ref.registry, scope, req.signal);
      const headers = { ...req.headers, ...(authorization ? { authorization } : {}) };
      const res = await this.sendOnce(ref, action, url, { ...req, headers });
      if (res.statusCode !== 401) return res;
      await discard(res);
      const retry = attempt === 0 && (await this.auth.learn(ref.registry, scope, header(res, 'www-authenticate'), authorization !== undefined));
      if (!retry) {
        throw new BuildError('unauthenticated', `Cannot ${action} ${ref.familiar}: unauthorized (401): ${await this.auth.describeRefusal(ref.registry)}`);
      }
    }
  }

  /**
   * One request; for an `insecure` registry that turns out not to speak TLS, the same request
   * again over plain HTTP, and plain HTTP from then on (BuildKit's fallback).
   */
  private async sendOnce(ref: ImageRef, action: string, url: URL, req: HttpRequest): Promise<HttpResponse> {
    const ours = isRegistryUrl(url, ref.registry);
    // A URL made before the fallback was learned (a relative upload Location) follows it too.
    const at = ours && url.protocol === 'https:' && this.hosts.scheme(ref.registry) === 'http' ? overPlainHttp(url, ref.registry) : url;
    let res: HttpResponse;
    try {
      res = await sendRequest(this.dispatcher, at, req, ref.registry, `${action} ${ref.familiar}`);
    } catch (err) {
      const cause = err instanceof BuildError ? err.cause : err;
      if (!ours || at.protocol !== 'https:' || !this.hosts.mayFallBack(ref.registry) || !httpsNotSpoken(cause, ref.registry)) throw err;
      this.hosts.learnPlainHttp(ref.registry);
      return sendRequest(this.dispatcher, overPlainHttp(at, ref.registry), req, ref.registry, `${action} ${ref.familiar}`);
    }
    if (ours && at.protocol === 'http:') {
      const bare = await readBare400(res, req);
      if (bare?.tlsPort) {
        throw new BuildError('failed-precondition',
          `Cannot ${action} ${ref.familiar}: ${ref.registry} speaks HTTPS, not plain HTTP (400); set registry.${JSON.stringify(ref.registry)}.http to false in the daemon config`);
      }
      if (bare) this.readBodies.set(res, bare.body);
    }
    return res;
  }

  /** The error for an unexpected answer, with the registry's own words when it gave some. */
  async fail(res: HttpResponse, ref: ImageRef, action: string, what?: string): Promise<BuildError> {
    let detail = '';
    try {
      const read = this.readBodies.get(res);
      const text = (read ?? (await readCapped(res, 64 * 1024, 'error body'))).toString('utf8');
      const parsed = errorBodySchema.safeParse(JSON.parse(text));
      const first = parsed.success ? parsed.data.errors?.[0] : undefined;
      detail = first?.message ?? first?.code ?? '';
    } catch {
      // Not the registry's JSON error format: the status says enough.
      await discard(res);
    }
    if (!detail) detail = res.statusCode === 404 ? 'not found' : 'unexpected answer';
    const subject = what ? `${what}: ` : '';
    return new BuildError(statusCode(res.statusCode),
      `Cannot ${action} ${ref.familiar}: ${subject}${detail.toLowerCase()} (${res.statusCode} from ${ref.registry})`);
  }

  async close(): Promise<void> {
    await this.ownDispatcher?.close();
  }
}

/**
 * For a bare `400` (no content type) to plain HTTP: whether it is Go's reply on a TLS port
 * (`HTTP/1.0 400` without headers, body "Client sent an HTTP request to an HTTPS server."), as
 * a registry configured for HTTPS on a loopback address gives, and the body read to tell, which
 * the response no longer has. Undefined for any other answer, whose body is left unread.
 */
async function readBare400(res: HttpResponse, req: HttpRequest): Promise<{ tlsPort: boolean; body: Buffer } | undefined> {
  if (res.statusCode !== 400 || header(res, 'content-type') !== undefined) return undefined;
  if (req.method === 'HEAD') return { tlsPort: true, body: Buffer.alloc(0) };
  // Go's reply is small; a registry's own error words fit the same cap as fail() reads.
  const body = await readCapped(res, 64 * 1024, 'error body').catch(() => Buffer.alloc(0));
  return { tlsPort: /HTTP request to an HTTPS server/i.test(body.toString('utf8')), body };
}

/** Whether `url` goes to `registry` itself (not its token server or a redirect target). */
function isRegistryUrl(url: URL, registry: string): boolean {
  // Parsed the same way: `https://reg:443` and `https://reg` both have the host `reg`.
  return url.host === new URL(`${url.protocol}//${apiHost(registry)}`).host;
}

/**
 * `url` (one of the registry's own) over plain HTTP to the port of the registry's name: not
 * URL's protocol setter, which would take `https://reg:443` to port 80.
 */
function overPlainHttp(url: URL, registry: string): URL {
  return new URL(`http://${apiHost(registry)}${url.pathname}${url.search}`);
}

function statusCode(status: number): BuildErrorCode {
  if (status === 404) return 'not-found';
  if (status === 401) return 'unauthenticated';
  if (status === 403) return 'permission-denied';
  if (status === 429 || status >= 500) return 'unavailable';
  if (status === 400 || status === 413 || status === 415) return 'invalid-argument';
  return 'failed-precondition';
}
