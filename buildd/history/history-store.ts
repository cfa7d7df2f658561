import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { MetaDb } from '../../store/meta-db';
import type { ProgressEvent } from '../builder';
import { isStepVertex } from '../ops/step-vertex';
import { HistoryLogWriter } from './history-log';

/** How much history is kept; past any bound the oldest finished builds go first. */
export interface HistoryLimits {
  maxEntries: number;
  maxAgeMs: number;
  /** of the progress logs, before compression */
  maxBytes: number;
}

/** BuildKit's defaults (50 builds, 48 hours), and a bound on the logs' bytes of our own. */
export const DEFAULT_HISTORY_LIMITS: HistoryLimits = { maxEntries: 50, maxAgeMs: 48 * 3_600_000, maxBytes: 512 * 1024 * 1024 };

export type HistoryStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'interrupted';

/** One build as `buildctl debug histories` shows it. Times in ms since the epoch. */
export interface HistoryRecord {
  ref: string;
  status: HistoryStatus;
  startedAt: number;
  completedAt?: number;
  frontend: string;
  frontendAttrs: Record<string, string>;
  outputs: Array<{ type: string; attrs: Record<string, string> }>;
  error?: string;
  /** Dockerfile steps that completed, and how many of them came from the cache */
  steps: number;
  cachedSteps: number;
  exporterResponse: Record<string, string>;
  logBytes: number;
  logTruncated: boolean;
}

const rowSchema = z.object({
  ref: z.string(),
  status: z.enum(['running', 'completed', 'failed', 'cancelled', 'interrupted']),
  started_at: z.string(),
  completed_at: z.string().nullable(),
  frontend: z.string(),
  frontend_attrs: z.string(),
  outputs: z.string(),
  error: z.string().nullable(),
  steps: z.number(),
  cached_steps: z.number(),
  exporter_response: z.string(),
  log_bytes: z.number(),
  log_truncated: z.number(),
});

const stringMap = z.record(z.string());
const outputsSchema = z.array(z.object({ type: z.string(), attrs: stringMap }));

/** What a build's start says about it. */
export interface HistoryStart {
  ref: string;
  frontend: string;
  frontendAttrs: Record<string, string>;
  outputs: Array<{ type: string; attrs: Record<string, string> }>;
}

/**
 * Past builds, in meta.db's build_history (a row from the start, so a build the daemon did not
 * see end shows as interrupted after a restart) with each build's progress in
 * `<dir>/<ref>.jsonl.gz`.
 *
 * Lifecycle: one per daemon, `open`ed at start (marks rows left running as interrupted, removes
 * log files without a row, applies the limits); `begin` for each build; the limits are applied
 * again after every build.
 */
export class HistoryStore {
  private constructor(
    private readonly meta: MetaDb,
    private readonly dir: string,
    private readonly limits: HistoryLimits,
    private readonly log: Logger,
  ) {}

  static async open(meta: MetaDb, dir: string, limits: HistoryLimits, log: Logger): Promise<HistoryStore> {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new HistoryStore(meta, dir, limits, log);
    meta.db
      .prepare("UPDATE build_history SET status = 'interrupted', error = 'the daemon stopped before the build ended', completed_at = NULL WHERE status = 'running'")
      .run();
    // an interrupted build's log counts towards maxBytes as it is on disk
    const unmeasured = meta.db.prepare("SELECT ref FROM build_history WHERE status = 'interrupted' AND log_bytes = 0").all() as Array<{ ref: string }>;
    const measure = meta.db.prepare('UPDATE build_history SET log_bytes = ? WHERE ref = ?');
    for (const { ref } of unmeasured) {
      const size = (await fsp.stat(store.logPath(ref)).catch(() => undefined))?.size ?? 0;
      if (size > 0) measure.run(size, ref);
    }
    const refs = new Set((meta.db.prepare('SELECT ref FROM build_history').all() as Array<{ ref: string }>).map((r) => r.ref));
    for (const name of await fsp.readdir(dir)) {
      if (!refs.has(name.replace(/\.jsonl\.gz$/, ''))) await fsp.rm(path.join(dir, name), { force: true, recursive: true });
    }
    await store.trim();
    return store;
  }

  /** Records a build's start; the returned recorder takes its progress and its end. */
  begin(start: HistoryStart): BuildHistory {
    const startedAt = new Date();
    this.meta.db
      .prepare("INSERT INTO build_history (ref, status, started_at, frontend, frontend_attrs, outputs) VALUES (?, 'running', ?, ?, ?, ?)")
      .run(start.ref, startedAt.toISOString(), start.frontend, JSON.stringify(start.frontendAttrs), JSON.stringify(start.outputs));
    const writer = new HistoryLogWriter(this.logPath(start.ref), Math.min(this.limits.maxBytes, 32 * 1024 * 1024));
    const completed = new Map<string, boolean>();
    let ended = false;
    return {
      progress: (ev) => {
        writer.write(ev);
        if (ev.type === 'vertex' && ev.completed !== undefined && ev.error === undefined && isStepVertex(ev.name)) completed.set(ev.digest, ev.cached);
      },
      end: async (status, error, response = {}) => {
        if (ended) return;
        ended = true;
        const logged = await writer.close();
        if (logged.error) this.log.warn({ build: start.ref, err: logged.error.message }, 'cannot write the build history log');
        const cached = [...completed.values()].filter(Boolean).length;
        this.meta.db
          .prepare(
            'UPDATE build_history SET status = ?, completed_at = ?, error = ?, steps = ?, cached_steps = ?, exporter_response = ?, log_bytes = ?, log_truncated = ? WHERE ref = ?',
          )
          .run(status, new Date().toISOString(), error ?? null, completed.size, cached, JSON.stringify(response), logged.bytes, logged.truncated ? 1 : 0, start.ref);
        await this.trim().catch((err: Error) => this.log.warn({ err: err.message }, 'cannot trim the build history'));
      },
    };
  }

  /** Every kept build (or the one named `ref`), newest first. */
  list(ref?: string): HistoryRecord[] {
    const rows = ref === undefined
      ? this.meta.db.prepare('SELECT * FROM build_history ORDER BY started_at DESC, rowid DESC').all()
      : this.meta.db.prepare('SELECT * FROM build_history WHERE ref = ?').all(ref);
    return rows.map((r) => toRecord(rowSchema.parse(r)));
  }

  /** The progress log of build `ref`, undefined when no such build is kept. */
  logFile(ref: string): string | undefined {
    const row = this.meta.db.prepare('SELECT ref FROM build_history WHERE ref = ?').get(ref);
    return row === undefined ? undefined : this.logPath(ref);
  }

  /** Removes the oldest finished builds past the limits (count, age, log bytes). */
  async trim(now = Date.now()): Promise<void> {
    const finished = (this.meta.db
      .prepare("SELECT ref, started_at, log_bytes FROM build_history WHERE status != 'running' ORDER BY started_at DESC, rowid DESC")
      .all() as Array<{ ref: string; started_at: string; log_bytes: number }>);
    const drop: string[] = [];
    let bytes = 0;
    for (const [i, r] of finished.entries()) {
      bytes += r.log_bytes;
      const old = now - Date.parse(r.started_at) > this.limits.maxAgeMs;
      if (i >= this.limits.maxEntries || old || bytes > this.limits.maxBytes) drop.push(r.ref);
    }
    if (drop.length === 0) return;
    const del = this.meta.db.prepare('DELETE FROM build_history WHERE ref = ?');
    this.meta.transaction(() => {
      for (const ref of drop) del.run(ref);
    });
    for (const ref of drop) await fsp.rm(this.logPath(ref), { force: true });
  }

  private logPath(ref: string): string {
    // refs are the daemon's own UUIDs; never a path from a client
    return path.join(this.dir, `${ref}.jsonl.gz`);
  }
}

/** One build's history. Lifecycle: from `HistoryStore.begin` to one `end` (later calls do nothing). */
export interface BuildHistory {
  progress(ev: ProgressEvent): void;
  end(status: Exclude<HistoryStatus, 'running' | 'interrupted'>, error?: string, response?: Record<string, string>): Promise<void>;
}

function toRecord(r: z.infer<typeof rowSchema>): HistoryRecord {
  const json = <T>(text: string, schema: z.ZodType<T>, fallback: T): T => {
    try {
      return schema.parse(JSON.parse(text));
    } catch {
      return fallback;
    }
  };
  return {
    ref: r.ref,
    status: r.status,
    startedAt: Date.parse(r.started_at),
    ...(r.completed_at === null ? {} : { completedAt: Date.parse(r.completed_at) }),
    frontend: r.frontend,
    frontendAttrs: json(r.frontend_attrs, stringMap, {}),
    outputs: json(r.outputs, outputsSchema, []),
    ...(r.error === null ? {} : { error: r.error }),
    steps: r.steps,
    cachedSteps: r.cached_steps,
    exporterResponse: json(r.exporter_response, stringMap, {}),
    logBytes: r.log_bytes,
    logTruncated: r.log_truncated === 1,
  };
}
