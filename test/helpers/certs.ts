import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPT = path.resolve(__dirname, '..', '..', 'certs', 'make-certs.sh');

/**
 * Makes a fresh CA, daemon and client certificates in `dir` with certs/make-certs.sh.
 * Returns the paths buildd and buildctl take.
 */
export async function makeCerts(dir: string, opts: { sans?: string[]; clients?: string[] } = {}): Promise<{
  dir: string;
  daemon: { ca: string; cert: string; key: string };
  /** --tlsdir of the default client, or of each named client */
  clientDir(name?: string): string;
}> {
  const args = [dir];
  for (const s of opts.sans ?? []) args.push('--san', s);
  for (const c of opts.clients ?? []) args.push('--client', c);
  await run('bash', [SCRIPT, ...args]);
  return {
    dir,
    daemon: { ca: path.join(dir, 'daemon', 'ca.pem'), cert: path.join(dir, 'daemon', 'cert.pem'), key: path.join(dir, 'daemon', 'key.pem') },
    clientDir: (name?: string) => (name ? path.join(dir, 'client', name) : path.join(dir, 'client')),
  };
}
