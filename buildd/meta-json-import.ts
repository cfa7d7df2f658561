import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { CacheStore, type CacheRecord } from '../solver/cache-store';
import { readJsonFile } from '../store/atomic-file';
import { imageRecordSchema, ImageStore, type ImageRecord } from '../store/image-store';
import { LayerIndex, layerSchema, type LayerRecord } from '../store/layer-index';
import type { MetaDb } from '../store/meta-db';
import { RepositoryRecords, storedRepositorySchema, type RepositoryRecord } from './registry/repository-records';

const cacheRecordSchema = z.object({ key: z.string(), snapshot: z.string().nullable(), createdAt: z.string() }).strict();

/** The record dirs of buildd before its metadata database, relative to the root. */
const JSON_DIRS = ['cache', 'layers', 'images', path.join('registry', 'repositories')] as const;

const IMPORTED = 'json-import';

/** What the import found: records taken, files left out (damaged or foreign, as the old stores read them). */
export interface JsonImportStats {
  cache: number;
  layers: number;
  images: number;
  repositories: number;
  skipped: number;
}

/**
 * Moves the JSON records an older buildd kept under `root` (cache/, layers/, images/,
 * registry/repositories/, one file per record) into the metadata database: read and checked as
 * the old stores read them (a damaged or foreign file was a miss then and is left out now),
 * written in one transaction with a `json-import` mark, and only then the directories removed.
 * A crash before the commit imports again from the start; one after it finds the mark and only
 * removes what is left. No build has written a row before the import (it runs first), so
 * nothing it writes replaces a newer row.
 *
 * Lifecycle: once per daemon start, right after the database opens, before any build.
 * Undefined when there was nothing to import.
 */
export async function importJsonRecords(meta: MetaDb, root: string, log?: Logger): Promise<JsonImportStats | undefined> {
  const present = [];
  for (const dir of JSON_DIRS) if (await isDir(path.join(root, dir))) present.push(dir);
  if (present.length === 0) return undefined;
  const done = meta.db.prepare('SELECT 1 FROM meta_events WHERE name = ?').get(IMPORTED) !== undefined;
  let stats: JsonImportStats | undefined;
  if (!done) {
    const read = await readAll(root);
    stats = read.stats;
    const cache = CacheStore.on(meta);
    const layers = LayerIndex.on(meta);
    const images = ImageStore.on(meta);
    const repos = RepositoryRecords.on(meta);
    meta.transaction(() => {
      for (const r of read.cache) cache.write(r);
      for (const [snapshot, variant, r] of read.layers) layers.writeRaw(snapshot, variant, r);
      for (const r of read.images) images.write(r);
      for (const r of read.repositories) repos.replace(r);
      meta.db.prepare('INSERT INTO meta_events (name, at) VALUES (?, ?)').run(IMPORTED, new Date().toISOString());
    });
    log?.info({ ...stats }, 'imported the JSON records of an older buildd into the metadata database');
  }
  for (const dir of present) await fsp.rm(path.join(root, dir), { recursive: true, force: true });
  return stats;
}

interface ReadRecords {
  cache: CacheRecord[];
  layers: Array<[string, string, LayerRecord]>;
  images: ImageRecord[];
  repositories: RepositoryRecord[];
  stats: JsonImportStats;
}

async function readAll(root: string): Promise<ReadRecords> {
  const out: ReadRecords = { cache: [], layers: [], images: [], repositories: [], stats: { cache: 0, layers: 0, images: 0, repositories: 0, skipped: 0 } };
  const each = async <T>(dir: string, schema: z.ZodType<T>, take: (base: string, record: T) => boolean): Promise<void> => {
    for (const file of await jsonFiles(path.join(root, dir))) {
      const parsed = schema.safeParse(await readJsonFile(path.join(root, dir, file)));
      if (!parsed.success || !take(file.slice(0, -'.json'.length), parsed.data)) out.stats.skipped++;
    }
  };
  await each('cache', cacheRecordSchema, (base, r) => {
    // the old file name was the key without its sha256: prefix
    if (r.key.replace(/^sha256:/, '') !== base) return false;
    out.cache.push(r);
    out.stats.cache++;
    return true;
  });
  await each('layers', layerSchema, (base, r) => {
    const [snapshot, variant = ''] = base.split('@', 2) as [string, string | undefined];
    if (!/^[A-Za-z0-9_-]+$/.test(snapshot)) return false;
    out.layers.push([snapshot, variant, r]);
    out.stats.layers++;
    return true;
  });
  await each('images', imageRecordSchema, (base, r) => {
    if (Buffer.from(r.name).toString('base64url') !== base) return false;
    out.images.push(r);
    out.stats.images++;
    return true;
  });
  await each(path.join('registry', 'repositories'), storedRepositorySchema, (base, r) => {
    if (createHash('sha256').update(r.name).digest('hex') !== base) return false;
    out.repositories.push({ name: r.name, blobs: [...new Set(r.blobs)], manifests: new Map(r.manifests), tags: new Map(r.tags) });
    out.stats.repositories++;
    return true;
  });
  return out;
}

async function jsonFiles(dir: string): Promise<string[]> {
  const names = await fsp.readdir(dir).catch(() => []);
  return names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
}

async function isDir(p: string): Promise<boolean> {
  return (await fsp.lstat(p).catch(() => undefined))?.isDirectory() ?? false;
}
