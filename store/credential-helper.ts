import { spawn } from 'node:child_process';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import type { Credentials } from './docker-credentials';

/** A helper has this long to answer (a keychain prompt would wait forever). */
const HELPER_TIMEOUT_MS = 30_000;
/** Largest answer read from a helper. */
const MAX_HELPER_OUTPUT = 64 * 1024;

const helperAnswerSchema = z.object({ ServerURL: z.string().optional(), Username: z.string().max(4096), Secret: z.string().max(64 * 1024) }).passthrough();

/**
 * Asks `docker-credential-<name> get` for the credentials of `serverUrl`, as docker does for
 * `credsStore` and `credHelpers` (the docker-credential-helpers protocol: the server URL on
 * stdin, `{"ServerURL","Username","Secret"}` on stdout). Undefined when the helper has none
 * ("credentials not found"); any other failure names the helper and what it said.
 * `env` is the environment it runs with (its PATH finds it).
 */
export async function credentialHelperGet(name: string, serverUrl: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new BuildError('invalid-argument', `Cannot use credential helper ${JSON.stringify(name)}: not a helper name`);
  const program = `docker-credential-${name}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(program, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: HELPER_TIMEOUT_MS });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.length > MAX_HELPER_OUTPUT) child.kill();
    });
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-4096)));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(new BuildError('failed-precondition', `Cannot get credentials for ${serverUrl} from ${program}: ${e.code === 'ENOENT' ? 'not found on PATH' : e.message}`)),
    );
    child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(serverUrl);
  });
  const said = (stdout + stderr).trim();
  if (code !== 0) {
    if (/credentials not found/i.test(said)) return undefined;
    throw new BuildError('failed-precondition', `Cannot get credentials for ${serverUrl} from ${program}: exit ${code}: ${said.slice(0, 300)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new BuildError('failed-precondition', `Cannot get credentials for ${serverUrl} from ${program}: its answer is not JSON`);
  }
  const parsed = helperAnswerSchema.safeParse(json);
  if (!parsed.success) throw new BuildError('failed-precondition', `Cannot get credentials for ${serverUrl} from ${program}: its answer has no Username and Secret`);
  return { username: parsed.data.Username, password: parsed.data.Secret };
}
