import { promises as fsp } from 'node:fs';
import { BuildError } from '../solver/build-error';

/**
 * The whole text of a small file the daemon is configured with (a config, a CA bundle, an
 * htpasswd file), refused when it is larger than `maxBytes` before it is read, so that a wrong
 * path cannot fill memory. Fails as `Cannot <what> <file>: <reason>` (invalid-argument), the
 * reason being the system's own (ENOENT: no such file...) or the size.
 */
export async function readSmallFile(file: string, maxBytes: number, what: string): Promise<string> {
  try {
    const st = await fsp.stat(file);
    if (st.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot ${what} ${file}: ${(err as Error).message}`);
  }
}
