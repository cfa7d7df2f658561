import { Dispatcher } from 'undici';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import type { CredentialSource, Credentials } from './docker-credentials';
import { discard, parseJson, readCapped, sendRequest } from './registry-http';

const MAX_TOKEN_BYTES = 1024 * 1024;
/** Tokens are refreshed this long before they expire, so one never dies mid-request. */
const EXPIRY_MARGIN_MS = 10_000;
/** The distribution spec's default lifetime when a token server does not say. */
const DEFAULT_EXPIRES_IN_S = 60;

/** A parsed `WWW-Authenticate` challenge. */
export type Challenge =
  | { scheme: 'bearer'; realm: string; service?: string; scope?: string }
  | { scheme: 'basic'; realm?: string };

/**
 * Parses a `WWW-Authenticate` header (`Bearer realm="…",service="…",scope="…"` or `Basic …`).
 * Returns undefined for schemes we do not speak.
 */
export function parseChallenge(value: string): Challenge | undefined {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(value);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  // key=value or key="quoted, with commas", separated by commas.
  const re = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m[2]); p; p = re.exec(m[2])) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  const scheme = m[1].toLowerCase();
  if (scheme === 'bearer') {
    if (!params.realm) return undefined;
    return { scheme, realm: params.realm, service: params.service, scope: params.scope };
  }
  if (scheme === 'basic') return { scheme, realm: params.realm };
  return undefined;
}

const tokenResponseSchema = z.object({
  token: z.string().max(MAX_TOKEN_BYTES).optional(),
  access_token: z.string().max(MAX_TOKEN_BYTES).optional(),
  expires_in: z.number().positive().optional(),
  issued_at: z.string().optional(),
}).passthrough();

function basic(creds: Credentials): string {
  return 'Basic ' + Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
}

interface CachedToken {
  value: string;
  expiresAt: number;
}

/**
 * Authorization for one registry client: remembers each registry's challenge and caches bearer
 * tokens per (registry, scope).
 *
 * Lifecycle: lives as long as its RegistryClient; holds only tokens in memory; nothing to close.
 */
export class RegistryAuth {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly credentials: CredentialSource | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** The Authorization header for a request, when the registry has challenged us before. */
  async authorization(registry: string, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const challenge = this.challenges.get(registry);
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      const creds = await this.credentials?.lookup(registry);
      return creds ? basic(creds) : undefined;
    }
    const key = `${registry} ${scope}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > this.now()) return `Bearer ${cached.value}`;
    // Parallel requests (layers pulled together) share one token request per scope.
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.fetchToken(registry, challenge, scope, signal).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    const token = await pending;
    this.tokens.set(key, token);
    return `Bearer ${token.value}`;
  }

  /**
   * Learns from a 401: records the challenge and forgets tokens for this scope. Returns whether
   * a retry may succeed (a new challenge, or credentials we have not tried yet).
   */
  async learn(registry: string, scope: string, wwwAuthenticate: string | undefined, sentAuthorization: boolean): Promise<boolean> {
    const challenge = wwwAuthenticate ? parseChallenge(wwwAuthenticate) : undefined;
    if (!challenge) return false;
    // Only a token that was sent and refused is dropped: a request that went without one (the
    // challenge not yet known) must not throw away the token a parallel request just fetched.
    if (sentAuthorization) this.tokens.delete(`${registry} ${scope}`);
    const known = this.challenges.get(registry);
    this.challenges.set(registry, challenge);
    if (!sentAuthorization) return challenge.scheme === 'bearer' || (await this.credentials?.lookup(registry)) !== undefined;
    // Sent, refused: retrying only helps if the registry now asks for something else.
    return known?.scheme !== challenge.scheme;
  }

  /** Says why the registry refused us, for the error message. */
  async describeRefusal(registry: string): Promise<string> {
    return (await this.credentials?.lookup(registry).catch(() => undefined))
      ? `the credentials for ${registry} were refused`
      : `no credentials for ${registry} (docker login, or $DOCKER_CONFIG/config.json)`;
  }

  private async fetchToken(registry: string, challenge: Extract<Challenge, { scheme: 'bearer' }>, scope: string, signal?: AbortSignal): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(challenge.realm);
    } catch {
      throw new BuildError('invalid-argument', `Cannot authenticate to ${registry}: the token realm ${JSON.stringify(challenge.realm)} is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new BuildError('invalid-argument', `Cannot authenticate to ${registry}: the token realm is not http(s)`);
    }
    if (challenge.service) url.searchParams.set('service', challenge.service);
    // several scopes (a mount also pulls from its source repository) go as several parameters
    for (const one of scope.split(' ')) url.searchParams.append('scope', one);
    if (challenge.scope && !scope.split(' ').includes(challenge.scope)) url.searchParams.append('scope', challenge.scope);
    const creds = await this.credentials?.lookup(registry);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (creds) headers.authorization = basic(creds);
    const started = this.now();
    const res = await sendRequest(this.dispatcher, url, { method: 'GET', headers, signal }, `${registry} (token server ${url.host})`);
    if (res.statusCode !== 200) {
      await discard(res);
      const why = res.statusCode === 401 || res.statusCode === 403 ? await this.describeRefusal(registry) : 'the token server failed';
      throw new BuildError(res.statusCode >= 500 ? 'unavailable' : 'unauthenticated',
        `Cannot get a token for ${registry} (${scope}): ${why} (${res.statusCode} from ${url.host})`);
    }
    const parsed = tokenResponseSchema.safeParse(parseJson(await readCapped(res, MAX_TOKEN_BYTES, `token from ${url.host}`), `token from ${url.host}`));
    const value = parsed.success ? (parsed.data.token ?? parsed.data.access_token) : undefined;
    if (!parsed.success || !value) {
      throw new BuildError('unauthenticated', `Cannot get a token for ${registry}: the token server's answer has no token`);
    }
    const issued = parsed.data.issued_at ? Date.parse(parsed.data.issued_at) : NaN;
    const base = Number.isFinite(issued) ? Math.min(issued, started) : started;
    const lifetime = (parsed.data.expires_in ?? DEFAULT_EXPIRES_IN_S) * 1000;
    return { value, expiresAt: base + lifetime - EXPIRY_MARGIN_MS };
  }
}

