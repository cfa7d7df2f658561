import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { describeZodError } from '../solver/describe-zod-error';
import { credentialHelperGet } from './credential-helper';
import { DOCKER_HUB } from './image-ref';

const MAX_CONFIG_BYTES = 1024 * 1024;

/** A user name and password (or token) for one registry. */
export interface Credentials {
  username: string;
  password: string;
}

/**
 * Where the registry client gets credentials. Lifecycle: made once (at daemon start or per
 * build); `lookup` may be called for every request (a source caches what is slow to get).
 */
export interface CredentialSource {
  /** Credentials for `registry` (host[:port], `docker.io` for Docker Hub), if any. */
  lookup(registry: string): Promise<Credentials | undefined>;
}

const authEntrySchema = z.object({
  auth: z.string().max(64 * 1024).optional(),
  username: z.string().max(4096).optional(),
  password: z.string().max(64 * 1024).optional(),
  identitytoken: z.string().optional(),
}).passthrough();

const helperName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a credential helper name is letters, digits, ".", "_", "-"');

const dockerConfigSchema = z.object({
  auths: z.record(authEntrySchema).optional(),
  credsStore: helperName.optional(),
  credHelpers: z.record(helperName).optional(),
}).passthrough();

/** What a config.json says about credentials: stored ones, and helpers to ask. A plain value. */
export interface DockerConfig {
  auths: ReadonlyMap<string, Credentials>;
  /** `credsStore`: the helper for every registry without its own */
  credsStore?: string;
  /** `credHelpers`: host[:port] → helper */
  credHelpers: ReadonlyMap<string, string>;
}

/** Docker Hub is written in config.json under several historical keys. */
const HUB_KEYS = new Set(['index.docker.io', 'registry-1.docker.io', 'docker.io']);

/** Reduces a config.json key (`https://host:5000/v1/`, `host:5000`) to host[:port]. */
export function normalizeRegistryKey(key: string): string {
  let host = key.trim().replace(/^[a-z]+:\/\//i, '');
  const slash = host.indexOf('/');
  if (slash >= 0) host = host.slice(0, slash);
  host = host.toLowerCase();
  return HUB_KEYS.has(host) ? DOCKER_HUB : host;
}

function decodeEntry(key: string, entry: z.infer<typeof authEntrySchema>): Credentials | undefined {
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon < 0) throw new BuildError('invalid-argument', `Cannot read docker credentials for ${key}: "auth" is not base64 of user:password`);
    return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  return undefined;
}

/** Credentials from a map keyed by host[:port]; also what tests and the daemon config build. */
export class StaticCredentials implements CredentialSource {
  constructor(private readonly byRegistry: ReadonlyMap<string, Credentials>) {}

  async lookup(registry: string): Promise<Credentials | undefined> {
    return this.byRegistry.get(normalizeRegistryKey(registry));
  }
}

/** Parses the text of a docker config.json. */
export function parseDockerConfig(text: string, source = 'config.json'): DockerConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new BuildError('invalid-argument', `Cannot read docker credentials from ${source}: not JSON`);
  }
  const parsed = dockerConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new BuildError('invalid-argument', `Cannot read docker credentials from ${source}: ${describeZodError(parsed.error)}`);
  }
  const map = new Map<string, Credentials>();
  for (const [key, entry] of Object.entries(parsed.data.auths ?? {})) {
    const creds = decodeEntry(key, entry);
    const host = normalizeRegistryKey(key);
    // The first spelling wins over later duplicates, like Docker's own lookup order.
    if (creds && !map.has(host)) map.set(host, creds);
  }
  const helpers = new Map<string, string>();
  for (const [key, helper] of Object.entries(parsed.data.credHelpers ?? {})) helpers.set(normalizeRegistryKey(key), helper);
  return { auths: map, credsStore: parsed.data.credsStore, credHelpers: helpers };
}

/** How long a helper's answer is used before it is asked again. */
const HELPER_TTL_MS = 60_000;

/**
 * `$DOCKER_CONFIG/config.json` as docker reads it, read again whenever the file changes (a
 * `docker login` on the daemon's machine needs no restart): `credHelpers` for their registry
 * first, then `credsStore`, then the stored `auths`. Helpers (docker-credential-*) run with
 * `env`; their answers are kept for a minute. A file that is missing means no credentials; a
 * malformed one fails the lookup, saying so (pulling anonymously would hide it).
 * Lifecycle: one per daemon; nothing to close.
 */
export class DockerConfigCredentials implements CredentialSource {
  private loaded: { stamp: string; config: DockerConfig } | undefined;
  private readonly helperAnswers = new Map<string, { creds: Credentials | undefined; until: number }>();

  constructor(
    readonly file: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  async lookup(registry: string): Promise<Credentials | undefined> {
    const config = await this.config();
    const host = normalizeRegistryKey(registry);
    const helper = config.credHelpers.get(host) ?? config.credsStore;
    if (helper !== undefined) {
      const fromHelper = await this.ask(helper, host);
      if (fromHelper) return fromHelper;
    }
    return config.auths.get(host);
  }

  /** The file's current content, read again when its identity, size or time changed. */
  async config(): Promise<DockerConfig> {
    let st: Awaited<ReturnType<typeof fsp.stat>>;
    try {
      st = await fsp.stat(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.loaded = undefined;
      return { auths: new Map(), credHelpers: new Map() };
    }
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.loaded?.stamp === stamp) return this.loaded.config;
    if (st.size > MAX_CONFIG_BYTES) throw new BuildError('invalid-argument', `Cannot read docker credentials from ${this.file}: ${st.size} bytes is over the ${MAX_CONFIG_BYTES} byte limit`);
    const config = parseDockerConfig(await fsp.readFile(this.file, 'utf8'), this.file);
    this.loaded = { stamp, config };
    this.helperAnswers.clear();
    return config;
  }

  private async ask(helper: string, host: string): Promise<Credentials | undefined> {
    const key = `${helper} ${host}`;
    const known = this.helperAnswers.get(key);
    if (known && known.until > Date.now()) return known.creds;
    // docker stores Docker Hub under its v1 URL, every other registry under host[:port]
    const serverUrl = host === DOCKER_HUB ? 'https://index.docker.io/v1/' : host;
    const creds = await credentialHelperGet(helper, serverUrl, this.env);
    this.helperAnswers.set(key, { creds, until: Date.now() + HELPER_TTL_MS });
    return creds;
  }
}

/**
 * The credentials of `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), checked
 * once now so that a malformed file stops the daemon at start, then followed as it changes.
 */
export async function loadDockerCredentials(env: NodeJS.ProcessEnv = process.env): Promise<DockerConfigCredentials> {
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker');
  const source = new DockerConfigCredentials(path.join(dir, 'config.json'), env);
  await source.config();
  return source;
}
