import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../solver/build-error';
import type { CacheFlag } from './cache-flag';

const DIGEST = /^sha256:([a-f0-9]{64})$/;
const CHUNK = 1024 * 1024;
const REF_NAME = 'org.opencontainers.image.ref.name';

/** What the daemon sends towards an --export-cache type=local directory (CacheExportData). */
export interface CacheExportMessage {
  export: number;
  digest: string;
  data: Buffer;
  eof: boolean;
  index: boolean;
  size: number;
  tag: string;
}

const layoutIndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(z.object({ mediaType: z.string(), digest: z.string(), size: z.number(), annotations: z.record(z.string()).optional() }).passthrough()).max(10_000),
}).passthrough();

/** The flags as the daemon gets them: a local entry's src or dest stays here. */
export function daemonCacheFlags(flags: readonly CacheFlag[], key: 'src' | 'dest'): { sent: CacheFlag[]; dirs: Map<number, string> } {
  const dirs = new Map<number, string>();
  const sent = flags.map((f, i) => {
    if (f.type !== 'local') return f;
    const dir = f.attrs[key];
    if (!dir) throw new BuildError('invalid-argument', `Cannot use ${key === 'src' ? '--import-cache' : '--export-cache'} type=local: ${key}=DIR is missing`);
    dirs.set(i, path.resolve(dir));
    const { [key]: _kept, ...attrs } = f.attrs;
    return { type: f.type, attrs };
  });
  return { sent, dirs };
}

/** The most blobs of a dest directory the daemon is told about (BuildStart's limit). */
const MAX_PRESENT = 10_000;

/**
 * The blobs an --export-cache type=local dest already has (`blobs/sha256/<hex>`, names only:
 * each was hashed before it was renamed there), so the daemon sends only the others; none
 * when the directory does not exist yet. At most MAX_PRESENT: the rest are sent again.
 */
export async function presentBlobs(dir: string): Promise<string[]> {
  const names = await fsp.readdir(path.join(dir, 'blobs', 'sha256')).catch(() => [] as string[]);
  return names
    .filter((n) => /^[a-f0-9]{64}$/.test(n))
    .slice(0, MAX_PRESENT)
    .map((n) => `sha256:${n}`);
}

/**
 * buildctl's side of local cache directories, OCI layouts as BuildKit's buildctl keeps them:
 * answers the daemon's reads of an --import-cache src (index.json, blobs/sha256/…, nothing
 * else) and writes what it sends to an --export-cache dest (each blob verified against its
 * digest before it is renamed into place, blobs already there kept, then index.json tagging the
 * cache manifest). Lifecycle: one per build; `close` when the call ends removes a partial blob.
 */
export class LocalCacheDirs {
  private open: { exportEntry: number; digest: string; tmp: string; file: fsp.FileHandle; hash: ReturnType<typeof createHash> } | undefined;
  private skipping: string | undefined;

  constructor(
    private readonly srcs: ReadonlyMap<number, string>,
    private readonly dests: ReadonlyMap<number, string>,
  ) {}

  /** Streams what the daemon asked for; `send` resolves when the call takes more. */
  async answer(id: number, entry: number, digest: string, send: (msg: { id: number; data: Buffer; eof: boolean; error: string }) => Promise<void>): Promise<void> {
    const dir = this.srcs.get(entry);
    let file: string | undefined;
    if (dir !== undefined) {
      const m = DIGEST.exec(digest);
      if (digest === '') file = path.join(dir, 'index.json');
      else if (m) file = path.join(dir, 'blobs', 'sha256', m[1]);
    }
    if (file === undefined) return send({ id, data: Buffer.alloc(0), eof: false, error: `no local cache ${entry + 1} or no blob ${digest}` });
    try {
      for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) await send({ id, data: chunk as Buffer, eof: false, error: '' });
      await send({ id, data: Buffer.alloc(0), eof: true, error: '' });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      await send({ id, data: Buffer.alloc(0), eof: false, error: e.code === 'ENOENT' ? `${file}: not found` : `${file}: ${e.message}` });
    }
  }

  /** Writes one message of an export; a blob that does not hash to its digest fails. */
  async write(msg: CacheExportMessage): Promise<void> {
    const dir = this.dests.get(msg.export);
    if (dir === undefined) throw new BuildError('invalid-argument', `Cannot write the cache: --export-cache ${msg.export + 1} is not type=local`);
    const m = DIGEST.exec(msg.digest);
    if (!m) throw new BuildError('invalid-argument', `Cannot write the cache: ${JSON.stringify(msg.digest)} is not a digest`);
    if (msg.index) return this.tag(dir, msg.digest, msg.size, msg.tag);
    const blobs = path.join(dir, 'blobs', 'sha256');
    if (this.open === undefined && this.skipping !== msg.digest) {
      await fsp.mkdir(blobs, { recursive: true });
      if (await exists(path.join(blobs, m[1]))) this.skipping = msg.digest;
      else {
        const tmp = path.join(blobs, `.${m[1]}.${randomBytes(4).toString('hex')}.tmp`);
        this.open = { exportEntry: msg.export, digest: msg.digest, tmp, file: await fsp.open(tmp, 'wx', 0o644), hash: createHash('sha256') };
      }
    }
    if (this.skipping === msg.digest) {
      if (msg.eof) this.skipping = undefined;
      return;
    }
    const open = this.open;
    if (open === undefined || open.digest !== msg.digest) throw new BuildError('invalid-argument', `Cannot write the cache: blob ${msg.digest} began before the last one ended`);
    if (msg.data.length > 0) {
      await open.file.write(msg.data);
      open.hash.update(msg.data);
    }
    if (!msg.eof) return;
    this.open = undefined;
    await open.file.close();
    const got = `sha256:${open.hash.digest('hex')}`;
    if (got !== msg.digest) {
      await fsp.rm(open.tmp, { force: true });
      throw new BuildError('invalid-argument', `Cannot write the cache: blob ${msg.digest} arrived as ${got}`);
    }
    await fsp.rename(open.tmp, path.join(blobs, m[1]));
  }

  /** Removes a blob left half written (a build that failed during the export). */
  async close(): Promise<void> {
    const open = this.open;
    this.open = undefined;
    if (open === undefined) return;
    await open.file.close().catch(() => undefined);
    await fsp.rm(open.tmp, { force: true });
  }

  private async tag(dir: string, digest: string, size: number, tag: string): Promise<void> {
    const file = path.join(dir, 'index.json');
    let manifests: Array<Record<string, unknown>> = [];
    try {
      const parsed = layoutIndexSchema.safeParse(JSON.parse(await fsp.readFile(file, 'utf8')));
      if (parsed.success) manifests = parsed.data.manifests.filter((d) => d.annotations?.[REF_NAME] !== tag);
    } catch {
      // no index yet, or one we cannot read: this export's is the index
    }
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [...manifests, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size, annotations: { [REF_NAME]: tag } }],
    };
    await fsp.writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(index));
    await fsp.rename(tmp, file);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}
