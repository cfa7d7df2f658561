import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * The key of each local's kept copy on the daemon (BuildStart.local_keys). BuildKit finds the
 * copy of a local by `name:sharedKeyHint:sessionSharedKey`, and marks the session key for
 * replacement by "absolute path + node id" of the client; buildx's node id is a random id kept
 * in its config dir. So here: sha256 of a random client id kept in
 * `$XDG_CONFIG_HOME/buildd/client-id` (else `~/.config/buildd/client-id`), the real path of the
 * directory and the local's name. Another machine, directory or local never shares a copy.
 *
 * No keys (every local sent in full, the old protocol) when neither variable is set or the id
 * cannot be read or stored: a key that changes every build would only fill the daemon's store.
 */
export async function localKeys(locals: Record<string, string>, env: NodeJS.ProcessEnv = process.env): Promise<Record<string, string>> {
  const id = await clientId(env).catch(() => undefined);
  if (id === undefined) return {};
  const keys: Record<string, string> = {};
  for (const [name, dir] of Object.entries(locals)) {
    const real = await fsp.realpath(dir).catch(() => path.resolve(dir));
    keys[name] = createHash('sha256').update(`buildd-local-key\0${id}\0${real}\0${name}`).digest('hex');
  }
  return keys;
}

async function clientId(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const base = env['XDG_CONFIG_HOME'] || (env['HOME'] ? path.join(env['HOME'], '.config') : undefined);
  if (base === undefined) return undefined;
  const file = path.join(base, 'buildd', 'client-id');
  const existing = await readId(file);
  if (existing !== undefined) return existing;
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // wx: a concurrent buildctl that wrote first wins, and both use its id
  await fsp.writeFile(file, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  return readId(file);
}

async function readId(file: string): Promise<string | undefined> {
  const text = await fsp.readFile(file, 'utf8').catch(() => undefined);
  const id = text?.trim();
  return id !== undefined && /^[0-9a-f]{32,128}$/.test(id) ? id : undefined;
}
