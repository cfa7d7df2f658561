import { canonicalJson, sha256Digest } from '../../solver/canonical-json';
import type { SourceOp } from '../../solver/op';
import type { Snapshotter } from '../../store/snapshotter';
import { GitSource } from './git-source';
import { HttpSource } from './http-source';

/**
 * Source ops that fetch from outside: `https://` / `http://` (ADD URL) and `git://` (ADD git).
 *
 * Cache keys, as BuildKit checks the remote on every build:
 * - http with attrs.checksum: the op alone (the content is pinned; nothing is fetched until
 *   a cache miss runs the op);
 * - http without: `cacheKey` downloads the file into a committed snapshot and keys on the op
 *   and the content digest, so changed content misses and unchanged content hits. `run` then
 *   hands that snapshot over instead of downloading again. A download whose key hits the
 *   cache is kept for that key (one snapshot per distinct content, reused by the next miss
 *   with the same content) rather than fetched again;
 * - git: the commit `git ls-remote` resolves the ref to, with subdir and keepGitDir; `run`
 *   checks out that same commit (pinned per vertex), so the result matches its key.
 *
 * Lifecycle: one per worker. Pinned state is per vertex digest and replaced by the next
 * `cacheKey` of that vertex; snapshots it committed belong to the snapshotter's GC.
 */
export class RemoteSources {
  /** vertex digest → the download its last cacheKey made */
  private readonly prefetched = new Map<string, string>();
  /** cache key → a committed download with that content */
  private readonly byKey = new Map<string, string>();
  /** vertex digest → the commit its last cacheKey resolved */
  private readonly commits = new Map<string, string>();

  constructor(private readonly snapshotter: Snapshotter, private readonly http: HttpSource, private readonly git: GitSource) {}

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
    const download = await this.http.download(op.identifier, op.attrs, signal);
    const key = sha256Digest(canonicalJson({ op, content: download.digest }));
    const earlier = this.byKey.get(key);
    if (earlier !== undefined && earlier !== download.snapshot && (await this.snapshotter.get(earlier))?.kind === 'committed') {
      await this.snapshotter.remove(download.snapshot);
      this.prefetched.set(vertex, earlier);
    } else {
      this.byKey.set(key, download.snapshot);
      this.prefetched.set(vertex, download.snapshot);
    }
    return key;
  }

  /** The snapshot of the source: the one pinned by `cacheKey`, else fetched now. */
  async run(vertex: string, op: SourceOp, signal: AbortSignal): Promise<string> {
    if (op.identifier.startsWith('git://')) {
      const req = GitSource.request(op.identifier, op.attrs);
      const commit = this.commits.get(vertex) ?? (await this.git.resolve(req, signal));
      return this.git.checkout(req, commit, signal);
    }
    const pinned = this.prefetched.get(vertex);
    if (pinned !== undefined && (await this.snapshotter.get(pinned))?.kind === 'committed') return pinned;
    return (await this.http.download(op.identifier, op.attrs, signal)).snapshot;
  }
}
