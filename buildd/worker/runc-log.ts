import { promises as fsp } from 'node:fs';
import { z } from 'zod';

/** One line of `runc --log-format json`; runc is trusted, but its output is still parsed, not assumed. */
const RuncLogLine = z.object({ level: z.string(), msg: z.string() }).passthrough();

const MAX_LOG_BYTES = 256 * 1024;

/**
 * The error messages runc logged to `file` (levels error, fatal, panic), oldest first, with
 * runc's own "runc run failed: " prefix removed. Empty when runc logged no error, which is
 * how a failed process (non-zero exit) is told apart from runc failing to run it.
 */
export async function readRuncErrors(file: string): Promise<string[]> {
  let text: string;
  try {
    const fh = await fsp.open(file, 'r');
    try {
      // the last bytes are the interesting ones: runc logs its fatal error last
      const { size } = await fh.stat();
      const start = Math.max(0, size - MAX_LOG_BYTES);
      const buf = Buffer.alloc(size - start);
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return parseRuncErrors(text);
}

/** The error messages in runc's JSON log text; lines that are not JSON log entries are skipped. */
export function parseRuncErrors(text: string): string[] {
  const errors: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      continue;
    }
    const parsed = RuncLogLine.safeParse(json);
    if (!parsed.success) continue;
    if (['error', 'fatal', 'panic'].includes(parsed.data.level)) {
      errors.push(parsed.data.msg.replace(/^runc (run|create|start) failed: /, ''));
    }
  }
  return errors;
}
