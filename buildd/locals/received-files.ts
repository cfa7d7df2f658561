import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import type { FileDigestCache } from '../../store/file-digest-cache';
import type { PlannedEntry } from './generation-builder';

/** Where the files a keyed-locals receiver is sent land in the new generation, and what it records of them. */

/**
 * The directory of the new generation's tree below `tmp` for the listed directory `relDir`
 * ('.' for the top), made (0700, as buildGeneration makes its directories) with every missing
 * parent; `made` remembers them for buildGeneration.
 */
export function receivedDir(tmp: string, made: Set<string>, relDir: string): string {
  const rel = relDir === '.' ? '' : relDir;
  const chain: string[] = [];
  for (let d = rel; !made.has(d); d = d.includes('/') ? path.posix.dirname(d) : '') {
    chain.push(d);
    if (d === '') break;
  }
  for (const d of chain.reverse()) {
    mkdirSync(d === '' ? path.join(tmp, 'tree') : path.join(tmp, 'tree', ...d.split('/')), { mode: 0o700 });
    made.add(d);
  }
  return rel === '' ? path.join(tmp, 'tree') : path.join(tmp, 'tree', ...rel.split('/'));
}

/** Files whose digest is recorded between two turns of the event loop (an lstat each). */
const RECORD_BATCH = 256;

/**
 * Tells the file digest cache the sha256 of each file received whole in this generation, taken
 * from the bytes as they were written, so that the first COPY of the context does not open and
 * read every file again to checksum it. Recorded against the file's final stat (mode and times
 * set), under the cache's own rule: a file born within its racy window before now is not
 * recorded and will be read. The tree is the daemon's own, written by nothing else.
 */
export async function recordReceivedDigests(digests: FileDigestCache, tree: string, entries: readonly PlannedEntry[], signal?: AbortSignal): Promise<void> {
  let n = 0;
  for (const p of entries) {
    if (p.digest === undefined) continue;
    if (++n % RECORD_BATCH === 0) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const st = lstatSync(path.join(tree, p.entry.path));
    const found = digests.lookup(st);
    if ('record' in found) found.record(p.digest);
  }
}

const EMPTY_DIGEST = createHash('sha256').digest('hex');

/**
 * The digest of every regular file of a new generation: received ones as they were hashed on
 * arrival, empty ones, and the rest (same content as in the generation before) from
 * `previous`; undefined when one is unknown (the previous listing was not held).
 */
export function fileDigests(entries: readonly PlannedEntry[], previous: ReadonlyMap<string, string> | undefined): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (const p of entries) {
    if (p.entry.type !== 'FILE') continue;
    const digest = p.digest ?? (p.entry.size === 0 ? EMPTY_DIGEST : p.change !== 'content' ? previous?.get(p.entry.path) : undefined);
    if (digest === undefined) return undefined;
    out.set(p.entry.path, digest);
  }
  return out;
}
