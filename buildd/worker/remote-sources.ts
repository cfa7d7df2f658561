import { canonicalJson, sha256Digest } from '../../solver/canonical-json';
import type { SourceOp } from '../../solver/op';
import { BoundedMap } from './bounded-map';
import { GitSource } from './git-source';
import { type Fetched, HttpSource } from './http-source';

/**
 * Pinned state is kept for at most this many vertices: one entry per source whose cache key
 * was computed and whose run has not come yet (on a cache hit it never comes).
 */
const MAX_PINNED = 1024;

/**
 * Source ops that fetch from outside: `https://` / `http://` (ADD URL) and `git://` (ADD git).
 *
 * Cache keys, as BuildKit checks the remote on every build:
 * - http with attrs.checksum: the op alone (the content is pinned; nothing is fetched until
 *   a cache miss runs the op);
 * - http without: `cacheKey` downloads the body into the content store (deduplicated by
 *   digest, so a download of known content adds nothing) and keys on the op, the content
 *   digest and Last-Modified (the file's mtime, as in BuildKit's key): changed content
 *   misses, unchanged content hits. Only `run`, on a miss, makes a snapshot, from that blob;
 * - git: the commit `git ls-remote` resolves the ref to, with subdir and keepGitDir; `run`
 *   checks out that same commit, so the result matches its key.
 *
 * Lifecycle: one per worker. What a `cacheKey` pinned for a vertex is taken by that vertex's
 * next `run` (or replaced by its next `cacheKey`), and at most MAX_PINNED vertices are kept;
 * a `run` that finds nothing pinned fetches or resolves again. Blobs belong to the content
 * store's GC, snapshots a `run` returns to its caller.
 */
export class RemoteSources {
  /** vertex digest → the download its last cacheKey stored */
  private readonly fetched = new BoundedMap<string, Fetched>(MAX_PINNED);
  /** vertex digest → the commit its last cacheKey resolved */
  private readonly commits = new BoundedMap<string, string>(MAX_PINNED);

  constructor(private readonly http: HttpSource, private readonly git: GitSource) {}

  static handles(identifier: string): boolean {
    return identifier.startsWith('https://') || identifier.startsWith('http://') || identifier.startsWith('git://');
  }

  async cacheKey(vertex: string, op: SourceOp, signal: AbortSignal): Promise<string> {
    if (op.identifier.startsWith('git://')) {
      const req = GitSource.request(op.identifier, op.attrs);
      const commit = await this.git.resolve(req, signal);
      this.commits.set(vertex, commit);
      return sha256Digest(canonicalJson({ kind: 'git', remote: req.remote.url, commit, subdir: req.subdir, keepGitDir: req.keepGitDir }));
    }
    const attrs = HttpSource.attrs(op.identifier, op.attrs);
    if (attrs.checksum !== undefined) return sha256Digest(canonicalJson(op));
    const fetched = await this.http.fetch(op.identifier, op.attrs, signal);
    this.fetched.set(vertex, fetched);
    return sha256Digest(canonicalJson({ op, content: fetched.digest, lastModified: fetched.lastModified }));
  }

  /** A new snapshot of the source: from what `cacheKey` pinned, else fetched now. */
  async run(vertex: string, op: SourceOp, signal: AbortSignal): Promise<string> {
    if (op.identifier.startsWith('git://')) {
      const req = GitSource.request(op.identifier, op.attrs);
      const commit = this.commits.take(vertex) ?? (await this.git.resolve(req, signal));
      return this.git.checkout(req, commit, signal);
    }
    const pinned = this.fetched.take(vertex);
    if (pinned !== undefined && (await this.http.has(pinned.digest))) return this.http.snapshot(op.identifier, op.attrs, pinned, signal);
    return (await this.http.download(op.identifier, op.attrs, signal)).snapshot;
  }
}
