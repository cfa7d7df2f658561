import { createReadStream, createWriteStream } from 'node:fs';
import * as readline from 'node:readline';
import { constants, createGunzip, createGzip } from 'node:zlib';
import { z } from 'zod';
import { BuildError } from '../../solver/build-error';
import type { ProgressEvent } from '../builder';

/** Most bytes of step output kept per build; the steps' statuses are kept up to twice that. */
export const DEFAULT_MAX_LOG_BYTES = 32 * 1024 * 1024;

const lineSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('vertex'),
    digest: z.string().max(1024),
    name: z.string(),
    started: z.number().optional(),
    completed: z.number().optional(),
    cached: z.boolean(),
    error: z.string().optional(),
    cacheMiss: z.string().optional(),
  }),
  z.object({ type: z.literal('log'), vertex: z.string().max(1024), stream: z.union([z.literal(1), z.literal(2)]), data: z.string(), at: z.number().optional() }),
  z.object({
    type: z.literal('warning'),
    message: z.string(),
    range: z.object({ file: z.string(), startLine: z.number(), endLine: z.number(), column: z.number().optional() }).optional(),
  }),
]);

/**
 * One build's progress as it happened, for `buildctl debug logs`: gzip'd JSON lines, one event
 * each (step output base64). Bounded: past `maxBytes` of events, step output is dropped, past
 * twice that everything is; the record says it was truncated.
 *
 * Lifecycle: made when the build starts; `write` each event; `close()` once when it ends
 * (resolves when the file is complete). A write after close is ignored.
 */
export class HistoryLogWriter {
  private readonly gzip = createGzip({ level: 6 });
  private readonly done: Promise<void>;
  private bytes = 0;
  private truncated = false;
  private closed = false;
  private failed: Error | undefined;

  constructor(
    readonly file: string,
    private readonly maxBytes = DEFAULT_MAX_LOG_BYTES,
  ) {
    const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
    this.gzip.pipe(out);
    // a history that cannot be written never fails the build it records
    const fail = (err: Error): void => {
      this.failed ??= err;
    };
    this.gzip.on('error', fail);
    out.on('error', fail);
    this.done = new Promise((resolve) => {
      out.on('close', () => resolve());
      out.on('error', () => resolve());
    });
  }

  write(ev: ProgressEvent): void {
    if (this.closed || this.failed) return;
    const line = JSON.stringify(ev.type === 'log' ? { ...ev, data: ev.data.toString('base64'), at: Date.now() } : ev) + '\n';
    const limit = ev.type === 'log' ? this.maxBytes : 2 * this.maxBytes;
    if (this.bytes + line.length > limit) {
      this.truncated = true;
      return;
    }
    this.bytes += line.length;
    this.gzip.write(line);
    // a step's end reaches the file at once: a daemon killed later leaves a log that shows it
    if (ev.type === 'vertex' && ev.completed !== undefined) this.gzip.flush(constants.Z_SYNC_FLUSH);
  }

  /** Ends the file: what it holds (bytes before compression), whether events were dropped, and the write error if any. */
  async close(): Promise<{ bytes: number; truncated: boolean; error?: Error }> {
    if (!this.closed) {
      this.closed = true;
      this.gzip.end();
    }
    await this.done;
    return { bytes: this.bytes, truncated: this.truncated, ...(this.failed ? { error: this.failed } : {}) };
  }
}

/**
 * The events of a history log in order. A file cut short (the daemon stopped during the build)
 * gives what it holds; a line that does not parse fails naming the file and line.
 */
export async function* readHistoryLog(file: string, signal?: AbortSignal): AsyncGenerator<ProgressEvent> {
  const input = createReadStream(file);
  const gunzip = createGunzip();
  input.on('error', (err) => gunzip.destroy(err));
  input.pipe(gunzip);
  // readline hands gunzip's errors to the loop below
  const lines = readline.createInterface({ input: gunzip, crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const text of lines) {
      signal?.throwIfAborted();
      n += 1;
      let parsed: z.infer<typeof lineSchema>;
      try {
        parsed = lineSchema.parse(JSON.parse(text));
      } catch {
        throw new BuildError('internal', `Cannot read the build history log ${file}: line ${n} is damaged`);
      }
      yield parsed.type === 'log' ? { ...parsed, data: Buffer.from(parsed.data, 'base64') } : parsed;
    }
  } catch (err) {
    // Z_BUF_ERROR: the end of a file whose writer never finished (the daemon stopped); its
    // last line may be cut too, and is left out
    if ((err as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') return;
    if (err instanceof BuildError) throw err;
    throw new BuildError('internal', `Cannot read the build history log ${file}: ${(err as Error).message}`);
  } finally {
    lines.close();
    input.destroy();
    gunzip.destroy();
  }
}
