/**
 * The metadata database's schema, one migration per version: MIGRATIONS[n] takes a database at
 * version n to n + 1 (SQLite's user_version). Append, never edit: a daemon root made by an
 * older buildd is brought up to date by the migrations it has not run.
 *
 * Every table is STRICT (a value of the wrong type is refused, not coerced). Times are ISO
 * 8601 text in UTC. Rows that belong to a repository go with it (ON DELETE CASCADE).
 */
export const MIGRATIONS: readonly string[] = [
  `
  -- build cache: the committed snapshot (NULL: the op changed nothing) an op with this key made
  CREATE TABLE cache_records (
    key TEXT PRIMARY KEY,
    snapshot TEXT,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    use_count INTEGER NOT NULL DEFAULT 0
  ) STRICT;
  CREATE INDEX cache_records_by_snapshot ON cache_records (snapshot);

  -- the blobs that hold a committed snapshot's changes; variant '' is its primary blob
  CREATE TABLE layers (
    snapshot TEXT NOT NULL,
    variant TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    source TEXT CHECK (source IN ('pull', 'build')),
    compression TEXT CHECK (compression IN ('gzip', 'zstd', 'uncompressed')),
    compression_level INTEGER,
    diff_size INTEGER,
    PRIMARY KEY (snapshot, variant)
  ) STRICT;
  CREATE INDEX layers_by_digest ON layers (digest);

  -- images built with --output type=image: name -> manifest (or index) descriptor
  CREATE TABLE images (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    descriptor TEXT NOT NULL,
    updated_at TEXT NOT NULL
  ) STRICT;
  CREATE INDEX images_by_digest ON images (digest);

  -- the embedded registry; rows keep the order things were added in (rowid)
  CREATE TABLE registry_repositories (
    name TEXT PRIMARY KEY
  ) STRICT;
  CREATE TABLE registry_blobs (
    repository TEXT NOT NULL REFERENCES registry_repositories (name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (repository, digest)
  ) STRICT;
  CREATE INDEX registry_blobs_by_digest ON registry_blobs (digest);
  CREATE TABLE registry_manifests (
    repository TEXT NOT NULL REFERENCES registry_repositories (name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    annotations TEXT,
    PRIMARY KEY (repository, digest)
  ) STRICT;
  CREATE INDEX registry_manifests_by_digest ON registry_manifests (digest);
  CREATE TABLE registry_tags (
    repository TEXT NOT NULL REFERENCES registry_repositories (name) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repository, tag)
  ) STRICT;

  -- one-time steps done on this root (the JSON import)
  CREATE TABLE meta_events (
    name TEXT PRIMARY KEY,
    at TEXT NOT NULL
  ) STRICT;
  `,
  `
  -- what made a cache record (the step's name), for du and prune
  ALTER TABLE cache_records ADD COLUMN description TEXT;

  -- bytes on disk of a committed snapshot's own layer, measured once (it never changes)
  CREATE TABLE snapshot_sizes (
    snapshot TEXT PRIMARY KEY,
    size INTEGER NOT NULL
  ) STRICT;
  `,
  `
  -- the last build of each step (name and Dockerfile line): its key and what made it, so a
  -- miss can say what changed (solver/key-parts.ts)
  CREATE TABLE step_keys (
    step TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    parts TEXT NOT NULL,
    at TEXT NOT NULL
  ) STRICT;
  `,
  `
  -- committed snapshots, per snapshotter; an active one lives only in the daemon's memory (a
  -- crash drops it, and its directory goes at the next open). A commit and the rows that point
  -- at it (its cache record, its layer) are one transaction.
  CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    snapshotter TEXT NOT NULL CHECK (snapshotter IN ('overlayfs', 'native')),
    parent TEXT REFERENCES snapshots (id) DEFERRABLE INITIALLY DEFERRED,
    created_at TEXT NOT NULL,
    linked_from TEXT
  ) STRICT;
  CREATE INDEX snapshots_by_parent ON snapshots (parent);
  `,
  `
  -- every blob of the content store, with when it was last written or found present (a blob
  -- younger than the oldest running build may be one that build is about to refer to)
  CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    written_at TEXT NOT NULL
  ) STRICT;
  `,
  `
  -- build history (buildctl debug histories): a row when a build starts, completed when it
  -- ends; its progress is a file of its own under <root>/history (see buildd/history)
  CREATE TABLE build_history (
    ref TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'interrupted')),
    started_at TEXT NOT NULL,
    completed_at TEXT,
    frontend TEXT NOT NULL,
    frontend_attrs TEXT NOT NULL,
    outputs TEXT NOT NULL,
    error TEXT,
    steps INTEGER NOT NULL DEFAULT 0,
    cached_steps INTEGER NOT NULL DEFAULT 0,
    exporter_response TEXT NOT NULL DEFAULT '{}',
    log_bytes INTEGER NOT NULL DEFAULT 0,
    log_truncated INTEGER NOT NULL DEFAULT 0
  ) STRICT;
  CREATE INDEX build_history_by_start ON build_history (started_at);
  `,
];
