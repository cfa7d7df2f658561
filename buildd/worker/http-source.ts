import { createHash } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { z } from 'zod';
import { BuildError } from '../../solver/build-error';
import type { Snapshotter } from '../../store/snapshotter';

/** The attrs of an `https://` / `http://` source op, checked where they enter the worker. */
const httpAttrsSchema = z.object({
  checksum: z.string().regex(/^sha256:[a-f0-9]{64}$/).optional(),
  filename: z.string().min(1).max(255).refine((f) => !f.includes('/') && f !== '.' && f !== '..', 'a plain file name').optional(),
  chmod: z.string().regex(/^[0-7]{1,4}$/).optional(),
}).passthrough();
export type HttpAttrs = z.infer<typeof httpAttrsSchema>;

/** One downloaded file, committed as a snapshot holding just it at its root. */
export interface Download {
  snapshot: string;
  /** sha256 of the content, `sha256:<hex>` */
  digest: string;
}

const MAX_REDIRECTS = 10;

/**
 * ADD <url>: downloads one file into a fresh snapshot, as BuildKit's http source does:
 * - named by attrs.filename, else the URL path's last segment, else `__unnamed__`;
 * - mode 0600 unless attrs.chmod (octal), owner 0:0, mtime from Last-Modified when the
 *   server sends one (else the time of the download);
 * - attrs.checksum is verified before the snapshot is committed;
 * - any status but 2xx (after up to 10 redirects) is an error naming the URL and the status.
 * The body streams to disk while it is hashed. Lifecycle: one per worker; each `download`
 * commits a snapshot (the caller owns it) or leaves nothing behind.
 */
export class HttpSource {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly snapshotter: Snapshotter, dispatcher?: Dispatcher) {
    this.dispatcher = (dispatcher ?? new Agent()).compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTS }));
  }

  /** Parses attrs; invalid-argument when they are not what an http source takes. */
  static attrs(url: string, attrs: Record<string, string>): HttpAttrs {
    const parsed = httpAttrsSchema.safeParse(attrs);
    if (!parsed.success) throw new BuildError('invalid-argument', `Cannot use source ${url}: bad attributes (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
    return parsed.data;
  }

  /** The name the file gets: attrs.filename, else the URL path's basename, else `__unnamed__`. */
  static filename(url: string, attrs: HttpAttrs): string {
    if (attrs.filename) return attrs.filename;
    let pathname: string;
    try {
      pathname = new URL(url).pathname;
    } catch {
      throw new BuildError('invalid-argument', `Cannot use source ${url}: not a URL`);
    }
    const base = path.posix.basename(decodeURIComponent(pathname));
    return base === '' || base === '.' || base === '..' || base === '/' ? '__unnamed__' : base;
  }

  async download(url: string, rawAttrs: Record<string, string>, signal: AbortSignal): Promise<Download> {
    const attrs = HttpSource.attrs(url, rawAttrs);
    const name = HttpSource.filename(url, attrs);
    const active = await this.snapshotter.prepare(undefined, signal);
    try {
      const root = await active.mount();
      const target = path.join(root, name);
      const res = await this.dispatcher.request({ ...requestTarget(url), method: 'GET', signal, headers: { 'user-agent': 'buildd' } }).catch((err: Error) => {
        throw new BuildError('unavailable', `Cannot download ${url}: ${err.message}`, { cause: err });
      });
      if (res.statusCode < 200 || res.statusCode > 299) {
        await res.body.dump().catch(() => undefined);
        throw new BuildError(res.statusCode === 404 ? 'not-found' : 'unavailable', `Cannot download ${url}: the server answered HTTP ${res.statusCode}`);
      }
      const hash = createHash('sha256');
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, cb): void {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      await pipeline(res.body, hasher, createWriteStream(target, { flags: 'wx', mode: 0o600 }) as Writable, { signal }).catch((err: Error) => {
        if (signal.aborted) throw err;
        throw new BuildError('unavailable', `Cannot download ${url}: ${err.message}`, { cause: err });
      });
      const digest = 'sha256:' + hash.digest('hex');
      if (attrs.checksum !== undefined && attrs.checksum !== digest) {
        throw new BuildError('invalid-argument', `Cannot verify ${url}: checksum mismatch: expected ${attrs.checksum}, got ${digest}`);
      }
      await fsp.lchown(target, 0, 0);
      await fsp.chmod(target, attrs.chmod !== undefined ? parseInt(attrs.chmod, 8) : 0o600);
      const lastModified = headerValue(res.headers['last-modified']);
      const mtime = lastModified ? new Date(lastModified) : undefined;
      if (mtime && !Number.isNaN(mtime.getTime())) await fsp.utimes(target, mtime, mtime);
      return { snapshot: await this.snapshotter.commit(active), digest };
    } finally {
      await active.release();
    }
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
