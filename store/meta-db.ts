import Database from 'better-sqlite3';
import { mkdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { MIGRATIONS } from './meta-schema';

/** The database file under a daemon's root, as containerd keeps its meta.db beside the content store. */
export const META_DB = 'meta.db';

/**
 * The daemon's metadata: committed snapshots, cache records, the layer index, image names and
 * the embedded registry's repositories, in one SQLite database (better-sqlite3) at
 * `<root>/meta.db`. Blobs and the snapshots' files stay on the filesystem; this holds what
 * refers to them, so a question over all of them (what uses this snapshot, what references this
 * blob) is a query, and a state change that touches several (a commit and its cache record) is
 * one transaction.
 *
 * WAL journal, synchronous=NORMAL: a transaction that returned survives the daemon's crash
 * (kill -9); a power loss may take back the last few, never half of one, and never leaves a
 * record whose blob or snapshot is missing, since those are synced before a record names them.
 * That costs no fsync per write, so a cache hit can count its use. The schema's version is SQLite's user_version; MIGRATIONS brings an older
 * file up to date in one transaction, and a file from a newer buildd is refused rather than
 * misread. (The JSON records of an older buildd are imported by buildd/meta-json-import.ts.)
 *
 * Calls are synchronous: each statement is microseconds on this process's own connection, and
 * a transaction runs to its end before anything else on the event loop, so two builds never
 * interleave inside one.
 *
 * One connection per file and process: every `open` of the same root shares it (counted; the
 * last `close` closes it). A store opened on its own (a snapshotter in a test, say) and the
 * daemon's stores then write through one connection, so a transaction of one may hold writes
 * of another (a commit and its cache record) instead of waiting for a lock it holds itself.
 * Lifecycle: opened once per daemon (createBuilder) and closed with the builder; each handle's
 * `close` is idempotent.
 */
export class MetaDb {
  private static readonly connections = new Map<string, { db: Database.Database; handles: number; ino: number }>();
  private closed = false;

  private constructor(readonly db: Database.Database, readonly file: string) {}

  static open(root: string): MetaDb {
    const file = path.join(path.resolve(root), META_DB);
    const shared = MetaDb.connections.get(file);
    // a root deleted and made again at the same path is another database
    if (shared !== undefined && shared.db.open && statSync(file, { throwIfNoEntry: false })?.ino === shared.ino) {
      shared.handles++;
      return new MetaDb(shared.db, file);
    }
    mkdirSync(root, { recursive: true });
    let db: Database.Database;
    try {
      db = new Database(file, { timeout: 10_000 });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new BuildError('internal', `Cannot open the metadata database ${file}: ${(err as Error).message}`, { cause: err });
    }
    const meta = new MetaDb(db, file);
    try {
      meta.migrate();
    } catch (err) {
      db.close();
      throw err;
    }
    MetaDb.connections.set(file, { db, handles: 1, ino: statSync(file).ino });
    return meta;
  }

  /** The schema version this buildd writes. */
  static get version(): number {
    return MIGRATIONS.length;
  }

  /** Runs `fn` in one transaction (BEGIN IMMEDIATE): all of its writes land, or none. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const shared = MetaDb.connections.get(this.file);
    if (shared?.db === this.db && --shared.handles > 0) return;
    if (shared?.db === this.db) MetaDb.connections.delete(this.file);
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    this.transaction(() => {
      const current = this.db.pragma('user_version', { simple: true }) as number;
      if (current > MIGRATIONS.length) {
        throw new BuildError(
          'failed-precondition',
          `Cannot use the metadata database ${this.file}: its schema version ${current} is newer than this buildd's (${MIGRATIONS.length}); run the newer buildd, or move the root aside`,
        );
      }
      for (let v = current; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v] as string);
      // a pragma cannot take a bound parameter; the value is our own integer
      if (current !== MIGRATIONS.length) this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
  }
}
