import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import type { SnapshotInfo } from './snapshotter';

const metaSchema = z.object({
  id: z.string().regex(/^[a-f0-9]{24}$/),
  parent: z.string().regex(/^[a-f0-9]{24}$/).optional(),
  kind: z.enum(['active', 'committed']),
  createdAt: z.string(),
  linkedFrom: z.array(z.string().regex(/^(local:[A-Za-z0-9._-]{1,128}|layer:[a-f0-9]{24})$/)).max(100_000).optional(),
}).strict();

/** The metadata file in each snapshot's directory. */
export const META = 'meta.json';

/** What `readMeta` found in a snapshot's directory. */
type MetaRead = { kind: 'ok'; info: SnapshotInfo } | { kind: 'missing' } | { kind: 'damaged'; reason: string };

/**
 * Writes `<dir>/<id>/meta.json` atomically (temporary file, fsync, rename, fsync of the
 * directory): after a crash it is the old record or the new one, never half of one.
 */
export async function writeMeta(dir: string, info: SnapshotInfo): Promise<void> {
  const file = path.join(dir, info.id, META);
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(info));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  const dh = await fsp.open(path.dirname(file), 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Deletes a snapshot's directory, metadata first: a crash in between leaves a dir without metadata, removed at open. */
export async function removeSnapshotDir(dir: string, id: string): Promise<void> {
  await fsp.rm(path.join(dir, id, META), { force: true });
  await fsp.rm(path.join(dir, id), { recursive: true, force: true });
}

/** Options of {@link loadSnapshots}. */
export interface LoadOptions {
  /** entries of the snapshots dir that are not snapshots */
  skip: string[];
  log: Logger;
  /** called for each committed snapshot kept, to drop what only an active one needs */
  onCommitted?: (sdir: string) => Promise<void>;
}

/**
 * Reads every snapshot of a snapshots dir at open. A snapshot whose metadata is damaged, and
 * every snapshot layered on it, is deleted with a warning: nothing can use it again, and the
 * build cache treats it as a miss, so builds stay correct and only rebuild what was lost.
 * Snapshots that were active when the daemon stopped (or never finished being created) are
 * deleted silently: nothing can use them.
 */
export async function loadSnapshots(dir: string, opts: LoadOptions): Promise<Map<string, SnapshotInfo>> {
  const metas = new Map<string, SnapshotInfo>();
  for (const name of await fsp.readdir(dir)) {
    if (opts.skip.includes(name)) continue;
    const sdir = path.join(dir, name);
    const read = await readMeta(path.join(sdir, META));
    const damage = read.kind === 'damaged' ? read.reason : read.kind === 'ok' && read.info.id !== name ? `${META} names snapshot ${read.info.id}` : undefined;
    if (damage !== undefined) {
      // The metadata is written atomically: damage is not a crash's doing but the disk's or
      // someone's, and worth a line. What it described (parent, committed or not) is lost.
      opts.log.warn({ snapshot: name, dir: sdir, reason: damage }, `Cannot load snapshot ${name}: its metadata is damaged (${damage}); deleting the snapshot and its layer`);
      await fsp.rm(sdir, { recursive: true, force: true });
    } else if (read.kind === 'ok' && read.info.kind === 'committed') {
      metas.set(name, read.info);
      await opts.onCommitted?.(sdir);
    } else {
      await fsp.rm(sdir, { recursive: true, force: true });
    }
  }
  // A committed snapshot whose parent is gone can never be used again, nor can what is
  // layered on it: all of them are found first, then deleted.
  const orphans = new Map<string, string>();
  for (let changed = true; changed; ) {
    changed = false;
    for (const info of metas.values()) {
      if (info.parent === undefined || orphans.has(info.id)) continue;
      if (!metas.has(info.parent) || orphans.has(info.parent)) {
        orphans.set(info.id, info.parent);
        changed = true;
      }
    }
  }
  for (const id of orphans.keys()) {
    metas.delete(id);
    await removeSnapshotDir(dir, id);
  }
  if (orphans.size > 0) {
    // The parents at the root of the loss: damaged (logged above) or deleted by hand.
    const ids = [...orphans.keys()].sort();
    const missingParents = [...new Set(orphans.values())].filter((p) => !orphans.has(p)).sort();
    opts.log.warn(
      { snapshots: ids, missingParents },
      `Cannot keep snapshots ${ids.join(', ')}: they are layered on snapshots that are gone (${missingParents.join(', ')}); deleting them`,
    );
  }
  return metas;
}

async function readMeta(file: string): Promise<MetaRead> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No metadata: a crash between mkdir and the first write, or in the middle of remove().
    if (code === 'ENOENT') return { kind: 'missing' };
    // EMFILE, EACCES, EIO...: the file may be fine; deleting the snapshot and all built on it
    // for a passing error would lose cache, so the daemon does not start instead.
    throw new BuildError('internal', `Cannot open the snapshotter: ${file} cannot be read: ${code ?? (err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { kind: 'damaged', reason: `${META} is not JSON: ${(err as Error).message}` };
  }
  const parsed = metaSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: 'damaged', reason: `${META} does not describe a snapshot: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}` };
  }
  return { kind: 'ok', info: parsed.data };
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points under `dir` in this mount namespace, deepest first: what a killed daemon left mounted. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir + '/';
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeMountinfo)
    .filter((p) => p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}
