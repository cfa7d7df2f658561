import { spawn } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * A layer blob's tar, decompressed as it is read.
 *
 * Lifecycle: read `stream` to its end, then await `finished()`, which rejects when the
 * decompressor failed (a corrupt blob); or call `close()` to stop early. `close()` is safe
 * at any time and more than once.
 */
export interface LayerStream {
  stream: Readable;
  finished(): Promise<void>;
  close(): void;
}

/** Opens a layer blob, told gzip, zstd or plain tar by its first bytes (as a media type may lie). */
export async function openLayerStream(file: string): Promise<LayerStream> {
  const head = Buffer.alloc(4);
  const handle = await fsp.open(file, 'r');
  let bytes: number;
  try {
    ({ bytesRead: bytes } = await handle.read(head, 0, 4, 0));
  } finally {
    await handle.close();
  }
  if (bytes >= 4 && head.equals(ZSTD_MAGIC)) return zstdStream(file);
  const raw = createReadStream(file);
  const stream = bytes >= 2 && head.subarray(0, 2).equals(GZIP_MAGIC) ? raw.pipe(createGunzip()) : raw;
  if (stream !== raw) raw.on('error', (err) => stream.destroy(err));
  const done = new Promise<void>((resolve, reject) => stream.once('end', resolve).once('error', reject));
  done.catch(() => undefined);
  return {
    stream,
    finished: () => done,
    close: () => {
      raw.destroy();
      stream.destroy();
    },
  };
}

/** zstd through Debian's `zstd` program (Node has no zstd of its own before 22), the file as its stdin. */
async function zstdStream(file: string): Promise<LayerStream> {
  const input = createReadStream(file);
  const child = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  input.pipe(child.stdin);
  child.stdin.on('error', () => undefined); // zstd stopped reading: its exit status says why
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`Cannot run zstd to read ${file}: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`Cannot decompress ${file}: zstd ${signal ? `was killed by ${signal}` : `exited with ${code}`}: ${stderr.trim()}`));
    });
  });
  done.catch(() => undefined);
  return {
    stream: child.stdout,
    finished: () => done,
    close: () => {
      input.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
