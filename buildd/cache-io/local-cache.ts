import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { BuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { CACHE_CONFIG_MEDIA_TYPE, MAX_CACHE_CONFIG_BYTES } from '../../solver/cache-io/cache-config';
import type { ContentStore } from '../../store/content-store';
import { MAX_MANIFEST_BYTES } from '../../store/registry-client';
import { parseJson } from '../../store/registry-http';
import { imageManifestSchema, ociLayoutIndexSchema, type Descriptor } from '../../store/manifest';
import type { ClientCacheTransfer } from '../builder';
import type { ExportedCache } from './cache-export';
import type { ImportedIndex } from './cache-loader';
import { checkedConfig } from './registry-cache';

const CHUNK = 1024 * 1024;
const REF_NAME = 'org.opencontainers.image.ref.name';

/**
 * The index of --import-cache type=local entry `entry`: the client's directory is an OCI layout
 * (as BuildKit's local cache): index.json names the cache manifest by `tag` (or `digest`);
 * every blob comes from the client when read, checked against its digest by the content store.
 * Undefined when the directory holds no such cache yet.
 */
export async function openLocalCache(client: ClientCacheTransfer, entry: number, spec: { tag: string; digest?: string }, content: ContentStore, signal: AbortSignal): Promise<ImportedIndex | undefined> {
  const name = `local cache ${spec.digest ?? spec.tag} (--import-cache ${entry + 1})`;
  let indexBytes: Buffer;
  try {
    indexBytes = await readCapped(client.cacheBlob(entry, ''), MAX_MANIFEST_BYTES, `the index.json of ${name}`);
  } catch (err) {
    if (err instanceof BuildError && /no such file|ENOENT|not found/i.test(err.message)) return undefined;
    throw err;
  }
  const index = ociLayoutIndexSchema.safeParse(parseJson(indexBytes, `the index.json of ${name}`));
  if (!index.success) throw new BuildError('invalid-argument', `Cannot import ${name}: malformed index.json: ${describeZodError(index.error) ?? 'invalid'}`);
  const pick = index.data.manifests.find((m) => (spec.digest !== undefined ? m.digest === spec.digest : m.annotations?.[REF_NAME] === spec.tag));
  if (pick === undefined) return undefined;
  const fetch = async (blob: Pick<Descriptor, 'digest' | 'size'>, fetchSignal: AbortSignal): Promise<void> => {
    if (await content.info(blob.digest)) return;
    await content.ingest(client.cacheBlob(entry, blob.digest), { digest: blob.digest, size: blob.size }, fetchSignal);
  };
  if (pick.size > MAX_MANIFEST_BYTES) throw new BuildError('invalid-argument', `Cannot import ${name}: its manifest is ${pick.size} bytes`);
  await fetch(pick, signal);
  const manifest = imageManifestSchema.safeParse(await content.readJson(pick.digest, MAX_MANIFEST_BYTES));
  if (!manifest.success) throw new BuildError('invalid-argument', `Cannot import ${name}: malformed manifest: ${describeZodError(manifest.error) ?? 'invalid'}`);
  if (manifest.data.config.mediaType !== CACHE_CONFIG_MEDIA_TYPE) throw new BuildError('invalid-argument', `Cannot import ${name}: its config is ${manifest.data.config.mediaType}, not a buildd cache`);
  if (manifest.data.config.size > MAX_CACHE_CONFIG_BYTES) throw new BuildError('invalid-argument', `Cannot import ${name}: its config is over ${MAX_CACHE_CONFIG_BYTES} bytes`);
  await fetch(manifest.data.config, signal);
  const config = checkedConfig(name, await content.readJson(manifest.data.config.digest, MAX_CACHE_CONFIG_BYTES), manifest.data.layers);
  return { name, ref: `local:${entry}`, config, blobs: manifest.data.layers, fetch };
}

/** Where a local cache export goes: the client's entry, the tag, the blobs the directory has. */
export interface LocalCacheTarget {
  entry: number;
  tag: string;
  present: ReadonlySet<string>;
}

/**
 * Writes a cache to --export-cache type=local entry `target.entry` on the client: every blob
 * the directory does not have yet, the manifest, then the index entry tagging it. Blobs of
 * imported records that were never downloaded are downloaded first, unless the directory has
 * them (it has only what it was sent).
 */
export async function exportLocalCache(client: ClientCacheTransfer, target: LocalCacheTarget, cache: ExportedCache, content: ContentStore, signal: AbortSignal): Promise<void> {
  const { entry, tag, present } = target;
  for (const r of cache.remote) if (!present.has(r.blob.digest)) await r.origin.fetch(r.blob, signal);
  const send = async (digest: string, source: Readable | AsyncIterable<Buffer>): Promise<void> => {
    let pending = Buffer.alloc(0);
    for await (const chunk of source) {
      signal.throwIfAborted();
      pending = pending.length === 0 ? (chunk as Buffer) : Buffer.concat([pending, chunk as Buffer]);
      while (pending.length >= CHUNK) {
        await client.sendCacheExport({ export: entry, digest, data: pending.subarray(0, CHUNK), eof: false, index: false, size: 0, tag: '' });
        pending = pending.subarray(CHUNK);
      }
    }
    await client.sendCacheExport({ export: entry, digest, data: pending, eof: true, index: false, size: 0, tag: '' });
  };
  for (const blob of cache.blobs) if (!present.has(blob.digest)) await send(blob.digest, await content.read(blob.digest));
  const manifestDigest = `sha256:${createHash('sha256').update(cache.manifestBytes).digest('hex')}`;
  await send(manifestDigest, Readable.from([cache.manifestBytes]));
  await client.sendCacheExport({ export: entry, digest: manifestDigest, data: Buffer.alloc(0), eof: false, index: true, size: cache.manifestBytes.length, tag });
}

async function readCapped(stream: Readable, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > max) {
      stream.destroy();
      throw new BuildError('invalid-argument', `Cannot read ${what}: over ${max} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
