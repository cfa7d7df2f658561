import { Agent, Dispatcher } from 'undici';
import { z } from 'zod';
import { BuildError, BuildErrorCode } from '../solver/build-error';
import type { CredentialSource } from './docker-credentials';
import { DOCKER_HUB, ImageRef } from './image-ref';
import { RegistryAuth } from './registry-auth';
import { HttpRequest, HttpResponse, discard, header, readCapped, sendRequest } from './registry-http';

/** Options shared by everything that talks to registries. */
export interface RegistryTransportOptions {
  credentials?: CredentialSource;
  /** Registries (host[:port]) spoken to over plain HTTP; loopback registries always are. */
  insecureRegistries?: readonly string[];
  /** The undici dispatcher to send through (tests wrap it to count requests). */
  dispatcher?: Dispatcher;
}

const errorBodySchema = z.object({
  errors: z.array(z.object({ code: z.string().optional(), message: z.string().optional() }).passthrough()).optional(),
}).passthrough();

const LOOPBACK_RE = /^(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?$/;

/** The API endpoint of a registry: Docker Hub's name is not its API host. */
function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}

/**
 * HTTP to registries with the auth dance: sends a request, and on a 401 learns the challenge,
 * gets a token (or uses Basic) and replays it once.
 *
 * Lifecycle: one per RegistryClient; `close` releases the dispatcher it created (not one it
 * was given).
 */
export class RegistryTransport {
  readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: Agent | undefined;
  private readonly auth: RegistryAuth;
  private readonly insecure: Set<string>;

  constructor(opts: RegistryTransportOptions = {}) {
    this.ownDispatcher = opts.dispatcher ? undefined : new Agent({ connections: 8 });
    this.dispatcher = opts.dispatcher ?? (this.ownDispatcher as Agent);
    this.auth = new RegistryAuth(this.dispatcher, opts.credentials);
    this.insecure = new Set(opts.insecureRegistries ?? []);
  }

  /** `http(s)://host/v2/<path>` for a registry. */
  url(registry: string, path: string): URL {
    const plain = LOOPBACK_RE.test(registry) || this.insecure.has(registry);
    return new URL(`${plain ? 'http' : 'https'}://${apiHost(registry)}/v2/${path}`);
  }

  /**
   * Sends `req` to `url` authorized for `scope` (`repository:<name>:pull[,push]`). Any status
   * comes back except a 401 after the retry, which becomes `unauthenticated`.
   */
  async send(ref: ImageRef, action: string, scope: string, url: URL, req: HttpRequest): Promise<HttpResponse> {
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.auth.authorization(ref.registry, scope, req.signal);
      const headers = { ...req.headers, ...(authorization ? { authorization } : {}) };
      const res = await sendRequest(this.dispatcher, url, { ...req, headers }, ref.registry);
      if (res.statusCode !== 401) return res;
      await discard(res);
      const retry = attempt === 0 && this.auth.learn(ref.registry, scope, header(res, 'www-authenticate'), authorization !== undefined);
      if (!retry) {
        throw new BuildError('unauthenticated', `Cannot ${action} ${ref.familiar}: unauthorized (401): ${this.auth.describeRefusal(ref.registry)}`);
      }
    }
  }

  /** The error for an unexpected answer, with the registry's own words when it gave some. */
  async fail(res: HttpResponse, ref: ImageRef, action: string, what?: string): Promise<BuildError> {
    let detail = '';
    try {
      const text = (await readCapped(res, 64 * 1024, 'error body')).toString('utf8');
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

function statusCode(status: number): BuildErrorCode {
  if (status === 404) return 'not-found';
  if (status === 401) return 'unauthenticated';
  if (status === 403) return 'permission-denied';
  if (status === 429 || status >= 500) return 'unavailable';
  if (status === 400 || status === 413 || status === 415) return 'invalid-argument';
  return 'failed-precondition';
}
