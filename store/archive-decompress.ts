import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BuildError } from '../solver/build-error';

/** The compressions an ADD archive may use, told apart by their first bytes as Docker does. */
export type Compression = 'none' | 'gzip' | 'bzip2' | 'xz';

const MAX_STDERR = 4096;

/** Reads the first bytes of `file` and names its compression (`none` for anything else). */
export async function detectCompression(file: string): Promise<Compression> {
  const handle = await fsp.open(file, 'r');
  try {
    const head = Buffer.alloc(6);
    const { bytesRead } = await handle.read(head, 0, 6, 0);
    const b = head.subarray(0, bytesRead);
    if (b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 0x08) return 'gzip';
    if (b.length >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (b.length >= 6 && b.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    return 'none';
  } finally {
    await handle.close();
  }
}

/**
 * A stream of `file`'s decompressed bytes. gzip goes through zlib; bzip2 and xz through
 * Debian's `bzip2 -dc` / `xz -dc`, which read the file from their stdin (its descriptor is
 * handed over, no copy through this process) and write to a pipe.
 *
 * Lifecycle: read `stream` to its end, then await `finished()`, which rejects when the
 * decompressor failed (corrupt or truncated input: a plain Error with the decompressor's own
 * reason, for the caller to name the file; a decompressor that cannot be started is a
 * BuildError); or call `close()` to stop early (kills the process, closes the file).
 * `close()` is idempotent and safe after `finished()`.
 */
export interface DecompressedFile {
  stream: Readable;
  finished(): Promise<void>;
  close(): Promise<void>;
}

export async function openDecompressed(file: string, signal?: AbortSignal): Promise<DecompressedFile> {
  const compression = await detectCompression(file);
  if (compression === 'none' || compression === 'gzip') {
    const raw = createReadStream(file, { signal });
    const stream = compression === 'gzip' ? raw.pipe(createGunzip()) : raw;
    if (compression === 'gzip') raw.on('error', (err) => stream.destroy(err));
    const done = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    done.catch(() => undefined);
    return {
      stream,
      finished: () => done,
      close: async () => {
        raw.destroy();
        stream.destroy();
      },
    };
  }
  const handle = await fsp.open(file, 'r');
  let child: ChildProcess;
  try {
    child = spawn(compression, ['-dc'], { stdio: [handle.fd, 'pipe', 'pipe'], signal });
  } catch (err) {
    await handle.close();
    throw err;
  }
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < MAX_STDERR) stderr += d.toString('utf8');
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => reject(new BuildError('internal', `Cannot run ${compression}: ${err.message}`, { cause: err })));
    child.on('close', (code, sig) => {
      void handle.close().catch(() => undefined);
      if (code === 0) resolve();
      else reject(new Error(`${compression} -dc ${sig ? `was killed by ${sig}` : `exited with code ${code}`}: ${stderr.trim().slice(0, 500)}`));
    });
  });
  exited.catch(() => undefined);
  const stdout = child.stdout as Readable;
  return {
    stream: stdout,
    finished: () => exited,
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      stdout.destroy();
      await exited.catch(() => undefined);
    },
  };
}
