import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import { describeZodError } from '../solver/describe-zod-error';
import { DOCKER_HUB } from './image-ref';

const MAX_CONFIG_BYTES = 1024 * 1024;

/** A user name and password (or token) for one registry. */
export interface Credentials {
  username: string;
  password: string;
}

/**
 * Where the registry client gets credentials. Lifecycle: read once (at daemon start or per
 * build); `lookup` is pure and may be called for every request.
 */
export interface CredentialSource {
  /** Credentials for `registry` (host[:port], `docker.io` for Docker Hub), if any. */
  lookup(registry: string): Credentials | undefined;
}

const authEntrySchema = z.object({
  auth: z.string().max(64 * 1024).optional(),
  username: z.string().max(4096).optional(),
  password: z.string().max(64 * 1024).optional(),
  identitytoken: z.string().optional(),
}).passthrough();

const dockerConfigSchema = z.object({
  auths: z.record(authEntrySchema).optional(),
}).passthrough();

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

  lookup(registry: string): Credentials | undefined {
    return this.byRegistry.get(normalizeRegistryKey(registry));
  }
}

/** Parses the text of a docker config.json into a CredentialSource. */
export function parseDockerConfig(text: string, source = 'config.json'): CredentialSource {
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
  return new StaticCredentials(map);
}

/**
 * Loads `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). A missing file means
 * no credentials; a malformed one is an error, since silently pulling anonymously would hide it.
 */
export async function loadDockerCredentials(env: NodeJS.ProcessEnv = process.env): Promise<CredentialSource> {
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker');
  const file = path.join(dir, 'config.json');
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new StaticCredentials(new Map());
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size > MAX_CONFIG_BYTES) throw new BuildError('invalid-argument', `Cannot read docker credentials from ${file}: ${size} bytes is over the ${MAX_CONFIG_BYTES} byte limit`);
    return parseDockerConfig(await handle.readFile('utf8'), file);
  } finally {
    await handle.close();
  }
}
