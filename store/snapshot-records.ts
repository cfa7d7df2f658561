import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import type { SnapshotInfo } from './snapshotter';
import type { SnapshotTable } from './snapshot-table';

const metaSchema = z.object({
  id: z.string().regex(/^[a-f0-9]{24}$/),
  parent: z.string().regex(/^[a-f0-9]{24}$/).optional(),
  kind: z.enum(['active', 'committed']),
  createdAt: z.string(),
  linkedFrom: z.array(z.string().regex(/^(local:[A-Za-z0-9._-]{1,128}|layer:[a-f0-9]{24})$/)).max(100_000).optional(),
}).strict();

/** The metadata file an older buildd kept in each snapshot's directory (imported once, see loadSnapshots). */
export const META = 'meta.json';

/** The meta_events mark of the import of META files, per snapshotter. */
const JSON_IMPORTED = 'snapshot-json-import';

/** What `readMeta` found in a snapshot's directory. */
type MetaRead = { kind: 'ok'; info: SnapshotInfo } | { kind: 'missing' } | { kind: 'damaged'; reason: string };

/** Options of {@link loadSnapshots}. */
export interface LoadOptions {
  /** entries of the snapshots dir that are not snapshots */
  skip: string[];
  log: Logger;
  /** called for each committed snapshot kept, to drop what only an active one needs */
  onCommitted?: (sdir: string) => Promise<void>;
}

/**
 * Reads a snapshotter's committed snapshots at open, from its rows in the metadata database, and
 * makes the directory agree with them:
 * - a directory without a row is deleted silently: a snapshot that was active when the daemon
 *   stopped, one whose commit never landed, or one whose removal was cut short;
 * - a row whose directory is gone (deleted by hand) or that does not read is deleted with a
 *   warning, with every snapshot layered on it: nothing can use them again, and the build cache
 *   treats them as misses, so builds stay correct and only rebuild what was lost.
 * A root made by an older buildd keeps its snapshots' metadata in META files: those are imported
 * first, once (see importJsonMetas).
 */
export async function loadSnapshots(dir: string, table: SnapshotTable, opts: LoadOptions): Promise<Map<string, SnapshotInfo>> {
  const names = (await fsp.readdir(dir)).filter((n) => !opts.skip.includes(n));
  if (!table.done(JSON_IMPORTED)) await importJsonMetas(dir, names, table, opts.log);
  const { infos, damaged } = table.all();
  for (const d of damaged) {
    opts.log.warn({ snapshot: d.id, reason: d.reason }, `Cannot load snapshot ${d.id}: its record is damaged (${d.reason}); deleting the snapshot and its layer`);
  }
  const present = new Set(names);
  const metas = new Map(infos.map((i) => [i.id, i]));
  const missing = infos.filter((i) => !present.has(i.id)).map((i) => i.id);
  if (missing.length > 0) {
    opts.log.warn({ snapshots: missing.sort() }, `Cannot keep snapshots ${missing.join(', ')}: their directories are gone; deleting their records`);
  }
  const lost = new Set([...missing, ...damaged.map((d) => d.id)]);
  for (const id of lost) metas.delete(id);
  const orphans = dropOrphans(metas);
  if (orphans.ids.length > 0) warnOrphans(opts.log, orphans);
  if (lost.size > 0 || orphans.ids.length > 0) table.delete(...lost, ...orphans.ids);
  for (const name of names) {
    const sdir = path.join(dir, name);
    if (metas.has(name)) await opts.onCommitted?.(sdir);
    else await fsp.rm(sdir, { recursive: true, force: true });
  }
  return metas;
}

/** Takes out of `metas` every snapshot layered (at any depth) on one that is not there. */
function dropOrphans(metas: Map<string, SnapshotInfo>): { ids: string[]; missingParents: string[] } {
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
  for (const id of orphans.keys()) metas.delete(id);
  // the parents at the root of the loss: damaged, missing, or deleted by hand
  const missingParents = [...new Set(orphans.values())].filter((p) => !orphans.has(p)).sort();
  return { ids: [...orphans.keys()].sort(), missingParents };
}

function warnOrphans(log: Logger, orphans: { ids: string[]; missingParents: string[] }): void {
  log.warn(
    { snapshots: orphans.ids, missingParents: orphans.missingParents },
    `Cannot keep snapshots ${orphans.ids.join(', ')}: they are layered on snapshots that are gone (${orphans.missingParents.join(', ')}); deleting them`,
  );
}

/**
 * Moves the META files of an older buildd's snapshots into the table, in one transaction with
 * the import's mark; only then are the files deleted (a crash before the commit imports again,
 * one after leaves files nothing reads). A damaged file is a warning and its snapshot (with
 * what is layered on it) is left out, so the open that follows deletes the directories; an
 * active one is left out silently. A file that cannot be read for another reason (EMFILE,
 * EIO...) stops the open, deleting nothing: the snapshot may be fine.
 */
async function importJsonMetas(dir: string, names: readonly string[], table: SnapshotTable, log: Logger): Promise<void> {
  const metas = new Map<string, SnapshotInfo>();
  const files: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name, META);
    const read = await readMeta(file);
    if (read.kind !== 'missing') files.push(file);
    const damage = read.kind === 'damaged' ? read.reason : read.kind === 'ok' && read.info.id !== name ? `${META} names snapshot ${read.info.id}` : undefined;
    if (damage !== undefined) {
      // written atomically: damage is not a crash's doing but the disk's or someone's
      log.warn({ snapshot: name, dir: path.join(dir, name), reason: damage }, `Cannot load snapshot ${name}: its metadata is damaged (${damage}); deleting the snapshot and its layer`);
    } else if (read.kind === 'ok' && read.info.kind === 'committed') {
      metas.set(name, read.info);
    }
  }
  const orphans = dropOrphans(metas);
  if (orphans.ids.length > 0) warnOrphans(log, orphans);
  table.insertAll([...metas.values()], () => table.markDone(JSON_IMPORTED));
  for (const file of files) await fsp.rm(file, { force: true });
  if (metas.size > 0) log.info({ snapshots: metas.size }, 'moved the snapshots\' metadata into the metadata database');
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
