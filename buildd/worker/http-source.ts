import { createHash } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { z } from 'zod';
import { BuildError } from '../../solver/build-error';
import type { ContentStore } from '../../store/content-store';
import type { Snapshotter } from '../../store/snapshotter';

/** The attrs of an `https://` / `http://` source op, checked where they enter the worker. */
const httpAttrsSchema = z.object({
  checksum: z.string().regex(/^sha256:[a-f0-9]{64}$/).optional(),
  filename: z.string().min(1).max(255).refine((f) => !f.includes('/') && f !== '.' && f !== '..', 'a plain file name').optional(),
  chmod: z.string().regex(/^[0-7]{1,4}$/).optional(),
}).passthrough();
export type HttpAttrs = z.infer<typeof httpAttrsSchema>;

/** BuildKit's name for a download whose URL gives none. */
const UNNAMED = '__unnamed__';

/** One response body, stored in the content store under its digest. */
export interface Fetched {
  /** sha256 of the content, `sha256:<hex>` */
  digest: string;
  size: number;
  /** the Last-Modified header as sent, when the server sent one */
  lastModified?: string;
}

/** One downloaded file, committed as a snapshot holding just it at its root. */
export interface Download extends Fetched {
  snapshot: string;
}

const MAX_REDIRECTS = 10;

/**
 * ADD <url>, as BuildKit's http source does, in two steps:
 * - `fetch` streams the body into the content store (hashed on the way, deduplicated by
 *   digest) and keeps Last-Modified; attrs.checksum is verified before the blob is visible,
 *   and a body whose checksum is already stored is not read at all;
 * - `snapshot` writes one stored blob into a fresh committed snapshot: named by
 *   attrs.filename, else the URL path's last segment, else `__unnamed__`; mode 0600 unless
 *   attrs.chmod (octal), owner 0:0, mtime from Last-Modified (else the time it is written).
 * Any status but 2xx (after up to 10 redirects) is an error naming the URL and the status.
 * Lifecycle: one per worker. Blobs stay in the content store (its GC owns them); each
 * `snapshot` commits a snapshot the caller owns, or leaves nothing behind.
 */
export class HttpSource {
  private readonly dispatcher: Dispatcher;
  private opened: Promise<ContentStore> | undefined;

  /** `content` may be a function that opens the store on first use. */
  constructor(
    private readonly snapshotter: Snapshotter,
    private readonly content: ContentStore | (() => Promise<ContentStore>),
    dispatcher?: Dispatcher,
  ) {
    this.dispatcher = (dispatcher ?? new Agent()).compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTS }));
  }

  /** Parses attrs; invalid-argument when they are not what an http source takes. */
  static attrs(url: string, attrs: Record<string, string>): HttpAttrs {
    const parsed = httpAttrsSchema.safeParse(attrs);
    if (!parsed.success) throw new BuildError('invalid-argument', `Cannot use source ${url}: bad attributes (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
    return parsed.data;
  }

  /**
   * The name the file gets: attrs.filename, else the URL path's decoded basename, else
   * `__unnamed__`. A path with bad percent-encoding (`%zz`) also gives `__unnamed__`, as in
   * BuildKit, where Go's url.Parse rejects it; so does a name that no file can have (NUL).
   */
  static filename(url: string, attrs: HttpAttrs): string {
    if (attrs.filename) return attrs.filename;
    let pathname: string;
    try {
      pathname = new URL(url).pathname;
    } catch {
      throw new BuildError('invalid-argument', `Cannot use source ${url}: not a URL`);
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      return UNNAMED;
    }
    const base = path.posix.basename(decoded);
    return base === '' || base === '.' || base === '..' || base === '/' || base.includes('\0') ? UNNAMED : base;
  }

  /** Downloads the body into the content store. */
  async fetch(url: string, rawAttrs: Record<string, string>, signal: AbortSignal): Promise<Fetched> {
    const attrs = HttpSource.attrs(url, rawAttrs);
    HttpSource.filename(url, attrs);
    const content = await this.store();
    const res = await this.dispatcher.request({ ...requestTarget(url), method: 'GET', signal, headers: { 'user-agent': 'buildd' } }).catch((err: Error) => {
      throw new BuildError('unavailable', `Cannot download ${url}: ${err.message}`, { cause: err });
    });
    if (res.statusCode < 200 || res.statusCode > 299) {
      await res.body.dump().catch(() => undefined);
      throw new BuildError(res.statusCode === 404 ? 'not-found' : 'unavailable', `Cannot download ${url}: the server answered HTTP ${res.statusCode}`);
    }
    const lastModified = headerValue(res.headers['last-modified']);
    // Hashed here too, so a checksum mismatch can name the digest the server's content has.
    const hash = createHash('sha256');
    let complete = false;
    const body = res.body;
    async function* hashed(): AsyncGenerator<Buffer> {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        hash.update(chunk);
        yield chunk;
      }
      complete = true;
    }
    try {
      const info = await content.ingest(hashed(), attrs.checksum !== undefined ? { digest: attrs.checksum } : {}, signal);
      return { digest: info.digest, size: info.size, lastModified };
    } catch (err) {
      if (signal.aborted) throw err;
      if (complete && attrs.checksum !== undefined) {
        const got = 'sha256:' + hash.digest('hex');
        if (got !== attrs.checksum) throw new BuildError('invalid-argument', `Cannot verify ${url}: checksum mismatch: expected ${attrs.checksum}, got ${got}`);
      }
      if (err instanceof BuildError) throw err;
      throw new BuildError('unavailable', `Cannot download ${url}: ${(err as Error).message}`, { cause: err as Error });
    } finally {
      // The store skips reading a body whose digest it already has: free the connection.
      // undici reports a destroyed body as an 'error' event; nobody reads it any more.
      if (!complete) body.on('error', () => undefined).destroy();
    }
  }

  /** Writes the fetched blob as the source's one file into a fresh snapshot and commits it. */
  async snapshot(url: string, rawAttrs: Record<string, string>, fetched: Fetched, signal: AbortSignal): Promise<string> {
    const attrs = HttpSource.attrs(url, rawAttrs);
    const name = HttpSource.filename(url, attrs);
    const content = await this.store();
    const active = await this.snapshotter.prepare(undefined, signal);
    try {
      const target = path.join(await active.mount(), name);
      await pipeline(await content.read(fetched.digest), createWriteStream(target, { flags: 'wx', mode: 0o600 }) as Writable, { signal });
      await fsp.lchown(target, 0, 0);
      await fsp.chmod(target, attrs.chmod !== undefined ? parseInt(attrs.chmod, 8) : 0o600);
      const mtime = fetched.lastModified ? new Date(fetched.lastModified) : undefined;
      if (mtime && !Number.isNaN(mtime.getTime())) await fsp.utimes(target, mtime, mtime);
      return await this.snapshotter.commit(active);
    } finally {
      await active.release();
    }
  }

  /** `fetch` then `snapshot`. */
  async download(url: string, rawAttrs: Record<string, string>, signal: AbortSignal): Promise<Download> {
    const fetched = await this.fetch(url, rawAttrs, signal);
    return { ...fetched, snapshot: await this.snapshot(url, rawAttrs, fetched, signal) };
  }

  /** Whether the blob a fetch stored is still there to build a snapshot from. */
  async has(digest: string): Promise<boolean> {
    return (await (await this.store()).info(digest)) !== undefined;
  }

  private store(): Promise<ContentStore> {
    if (typeof this.content !== 'function') return Promise.resolve(this.content);
    const open = this.content;
    // A failed open is not remembered, so the next download tries again.
    this.opened ??= open().catch((err: unknown) => {
      this.opened = undefined;
      throw err;
    });
    return this.opened;
  }
}

function requestTarget(url: string): { origin: string; path: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BuildError('invalid-argument', `Cannot use source ${url}: not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new BuildError('invalid-argument', `Cannot use source ${url}: not http or https`);
  return { origin: u.origin, path: u.pathname + u.search };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
