import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ContentStore } from '../../store/content-store';
import { MediaTypes } from '../../store/oci-media-types';
import { DistributionError } from './distribution-error';
import { checkManifest, MAX_MANIFEST_BYTES } from './manifest-checks';
import { compareAscii, type ManifestEntry, type RepositoryRecord, type RepositoryRecords } from './repository-records';
import { blobDigest, isDigest, repositoryName, type RegistryRoute } from './repository-names';
import type { UploadSessions } from './upload-sessions';

/** Largest annotations of a manifest kept for the referrers API (larger ones are left out of its entry). */
const MAX_KEPT_ANNOTATION_BYTES = 16 * 1024;

/** Most entries a tags or catalog page may ask for (`n`); more is refused. */
export const MAX_PAGE = 10_000;

/** One request as a handler sees it. */
export interface RegistryRequest {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  route: RegistryRoute;
  signal: AbortSignal;
}

/**
 * The Distribution API's operations over the content store (bytes) and the repository
 * records (what each repository holds): pull, push (monolithic, chunked, streamed, mounted),
 * tags, catalog, deletion and referrers. Stateless itself: every state change goes through
 * RepositoryRecords.update or UploadSessions.
 */
export class RegistryHandlers {
  constructor(
    private readonly content: ContentStore,
    private readonly repos: RepositoryRecords,
    private readonly uploads: UploadSessions,
  ) {}

  async handle(r: RegistryRequest): Promise<void> {
    const method = r.req.method ?? 'GET';
    const route = r.route;
    switch (route.kind) {
      case 'base':
        if (method === 'GET' || method === 'HEAD') return send(r, 200, {}, Buffer.from('{}'), 'application/json');
        break;
      case 'catalog':
        if (method === 'GET') return this.catalog(r);
        break;
      case 'tags':
        if (method === 'GET') return this.tags(r, route.name);
        break;
      case 'manifest':
        if (method === 'GET' || method === 'HEAD') return this.getManifest(r, route.name, route.reference, method === 'HEAD');
        if (method === 'PUT') return this.putManifest(r, route.name, route.reference);
        if (method === 'DELETE') return this.deleteManifest(r, route.name, route.reference);
        break;
      case 'blob':
        if (method === 'GET' || method === 'HEAD') return this.getBlob(r, route.name, route.digest, method === 'HEAD');
        if (method === 'DELETE') return this.deleteBlob(r, route.name, route.digest);
        break;
      case 'uploads':
        if (method === 'POST') return this.startUpload(r, route.name);
        break;
      case 'upload':
        if (method === 'GET') return uploadStatus(r, route.name, route.id, this.uploads.size(route.name, route.id), 204);
        if (method === 'PATCH') return this.patchUpload(r, route.name, route.id);
        if (method === 'PUT') return this.putUpload(r, route.name, route.id);
        if (method === 'DELETE') {
          await this.uploads.cancel(route.name, route.id);
          return send(r, 204, {});
        }
        break;
      case 'referrers':
        if (method === 'GET') return this.referrers(r, route.name, route.digest);
        break;
    }
    throw new DistributionError(405, 'UNSUPPORTED', `${method} is not supported here`);
  }

  private async catalog(r: RegistryRequest): Promise<void> {
    const page = paginate(await this.repos.names(), r.url);
    return sendPage(r, '/v2/_catalog', page, { repositories: page.items });
  }

  private async tags(r: RegistryRequest, name: string): Promise<void> {
    const record = await this.repos.get(name);
    if (!record) throw new DistributionError(404, 'NAME_UNKNOWN', `repository ${name} is not known`);
    const page = paginate([...record.tags.keys()].sort(compareAscii), r.url);
    return sendPage(r, `/v2/${name}/tags/list`, page, { name, tags: page.items });
  }

  private async getManifest(r: RegistryRequest, name: string, reference: string, head: boolean): Promise<void> {
    const record = await this.repos.get(name);
    const digest = isDigest(reference) ? reference : record?.tags.get(reference);
    const entry = digest === undefined ? undefined : record?.manifests.get(digest);
    if (!record || digest === undefined || !entry) throw new DistributionError(404, 'MANIFEST_UNKNOWN', `manifest ${reference} is not in ${name}`);
    const headers = { 'docker-content-digest': digest, 'content-type': entry.mediaType, 'content-length': String(entry.size) };
    if (head) return send(r, 200, headers);
    r.res.writeHead(200, headers);
    await pipeline(await this.content.read(digest), r.res, { signal: r.signal });
  }

  private async putManifest(r: RegistryRequest, name: string, reference: string): Promise<void> {
    const body = await readCapped(r.req, MAX_MANIFEST_BYTES);
    const checked = checkManifest(body, header(r.req, 'content-type'));
    const digest = 'sha256:' + createHash('sha256').update(body).digest('hex');
    if (isDigest(reference) && reference !== digest) throw new DistributionError(400, 'DIGEST_INVALID', `the manifest has digest ${digest}, not ${reference}`);
    await this.repos.update(name, async (record) => {
      const linked = new Set(record.blobs);
      const missingBlob = checked.blobs.find((d) => !linked.has(d));
      if (missingBlob) throw new DistributionError(400, 'MANIFEST_BLOB_UNKNOWN', `blob ${missingBlob} is not in ${name}`, { digest: missingBlob });
      const missingManifest = checked.manifests.find((d) => !record.manifests.has(d));
      if (missingManifest) throw new DistributionError(400, 'MANIFEST_BLOB_UNKNOWN', `manifest ${missingManifest} is not in ${name}`, { digest: missingManifest });
      await this.content.ingest(Readable.from([body]), { digest, size: body.length }, r.signal);
      // annotations are kept for the referrers API only, and only while small: a record is read whole on every request
      const annotations = checked.annotations && JSON.stringify(checked.annotations).length <= MAX_KEPT_ANNOTATION_BYTES ? checked.annotations : undefined;
      record.manifests.set(digest, {
        mediaType: checked.mediaType,
        size: body.length,
        ...(checked.subject ? { subject: checked.subject } : {}),
        ...(checked.artifactType ? { artifactType: checked.artifactType } : {}),
        ...(annotations ? { annotations } : {}),
      });
      if (!isDigest(reference)) record.tags.set(reference, digest);
    });
    const headers: Record<string, string> = { location: `/v2/${name}/manifests/${digest}`, 'docker-content-digest': digest };
    if (checked.subject) headers['oci-subject'] = checked.subject;
    return send(r, 201, headers);
  }

  private async deleteManifest(r: RegistryRequest, name: string, reference: string): Promise<void> {
    await this.repos.update(name, (record) => {
      if (!isDigest(reference)) {
        if (!record.tags.delete(reference)) throw new DistributionError(404, 'MANIFEST_UNKNOWN', `tag ${reference} is not in ${name}`);
        return;
      }
      if (!record.manifests.delete(reference)) throw new DistributionError(404, 'MANIFEST_UNKNOWN', `manifest ${reference} is not in ${name}`);
      for (const [tag, d] of [...record.tags]) if (d === reference) record.tags.delete(tag);
    });
    return send(r, 202, {});
  }

  private async getBlob(r: RegistryRequest, name: string, digest: string, head: boolean): Promise<void> {
    const record = await this.repos.get(name);
    const info = record?.blobs.includes(digest) ? await this.content.info(digest) : undefined;
    if (!info) throw new DistributionError(404, 'BLOB_UNKNOWN', `blob ${digest} is not in ${name}`, { digest });
    const base = { 'docker-content-digest': digest, 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    const range = byteRange(header(r.req, 'range'), info.size);
    if (range === undefined) {
      if (head) return send(r, 200, { ...base, 'content-length': String(info.size) });
      r.res.writeHead(200, { ...base, 'content-length': String(info.size) });
      await pipeline(createReadStream(this.content.blobPath(digest)), r.res, { signal: r.signal });
      return;
    }
    const headers = { ...base, 'content-length': String(range.end - range.start + 1), 'content-range': `bytes ${range.start}-${range.end}/${info.size}` };
    if (head) return send(r, 206, headers);
    r.res.writeHead(206, headers);
    await pipeline(createReadStream(this.content.blobPath(digest), { start: range.start, end: range.end }), r.res, { signal: r.signal });
  }

  private async deleteBlob(r: RegistryRequest, name: string, digest: string): Promise<void> {
    await this.repos.update(name, (record) => {
      if (!record.blobs.includes(digest)) throw new DistributionError(404, 'BLOB_UNKNOWN', `blob ${digest} is not in ${name}`, { digest });
      record.blobs = record.blobs.filter((d) => d !== digest);
    });
    return send(r, 202, {});
  }

  private async startUpload(r: RegistryRequest, name: string): Promise<void> {
    const mount = r.url.searchParams.get('mount');
    const from = r.url.searchParams.get('from');
    if (mount !== null && from !== null && (await this.mountBlob(name, blobDigest(mount), from))) {
      return send(r, 201, { location: `/v2/${name}/blobs/${mount}`, 'docker-content-digest': mount });
    }
    const given = r.url.searchParams.get('digest');
    // checked before anything is written: a bad digest leaves no upload behind
    const digest = given === null ? undefined : blobDigest(given);
    const id = await this.uploads.start(name);
    if (digest === undefined) return uploadStatus(r, name, id, 0, 202);
    // monolithic: the POST's body is the whole blob
    try {
      await this.uploads.append(name, id, r.req, undefined, r.signal);
    } catch (err) {
      await this.uploads.cancel(name, id).catch(() => undefined);
      throw err;
    }
    return this.commitUpload(r, name, id, digest);
  }

  /** Links `digest` from repository `from` into `name` when `from` has it; false otherwise (then a plain upload starts). */
  private async mountBlob(name: string, digest: string, from: string): Promise<boolean> {
    let source: RepositoryRecord | undefined;
    try {
      source = await this.repos.get(repositoryName(from));
    } catch {
      return false;
    }
    if (!source?.blobs.includes(digest) || !(await this.content.info(digest))) return false;
    await this.repos.update(name, (record) => link(record, digest));
    return true;
  }

  private async patchUpload(r: RegistryRequest, name: string, id: string): Promise<void> {
    const range = header(r.req, 'content-range');
    let from: number | undefined;
    if (range !== undefined) {
      const m = /^(?:bytes )?(\d+)-(\d+)$/.exec(range.trim());
      if (!m) throw new DistributionError(416, 'BLOB_UPLOAD_INVALID', `invalid Content-Range ${JSON.stringify(range.slice(0, 100))}`);
      from = Number(m[1]);
    }
    const size = await this.uploads.append(name, id, r.req, from, r.signal);
    return uploadStatus(r, name, id, size, 202);
  }

  private async putUpload(r: RegistryRequest, name: string, id: string): Promise<void> {
    const digest = blobDigest(r.url.searchParams.get('digest'));
    // the closing PUT may carry the last chunk (or everything)
    if (hasBody(r.req)) await this.uploads.append(name, id, r.req, undefined, r.signal);
    return this.commitUpload(r, name, id, digest);
  }

  private async commitUpload(r: RegistryRequest, name: string, id: string, digest: string): Promise<void> {
    await this.uploads.finish(name, id, digest, r.signal);
    await this.repos.update(name, (record) => link(record, digest));
    return send(r, 201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest });
  }

  private async referrers(r: RegistryRequest, name: string, digest: string): Promise<void> {
    const record = await this.repos.get(name);
    const artifactType = r.url.searchParams.get('artifactType');
    const manifests = [...(record?.manifests ?? new Map<string, ManifestEntry>())]
      .filter(([, m]) => m.subject === digest && (artifactType === null || m.artifactType === artifactType))
      .sort(([a], [b]) => compareAscii(a, b))
      .map(([d, m]) => ({
        mediaType: m.mediaType,
        digest: d,
        size: m.size,
        ...(m.artifactType ? { artifactType: m.artifactType } : {}),
        ...(m.annotations ? { annotations: m.annotations } : {}),
      }));
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests }));
    const headers: Record<string, string> = artifactType === null ? {} : { 'oci-filters-applied': 'artifactType' };
    return send(r, 200, headers, body, MediaTypes.ociIndex);
  }
}

function link(record: RepositoryRecord, digest: string): void {
  if (!record.blobs.includes(digest)) record.blobs.push(digest);
}

function send(r: RegistryRequest, status: number, headers: Record<string, string>, body?: Buffer, contentType?: string): void {
  const h: Record<string, string> = { ...headers };
  if (body !== undefined) {
    h['content-type'] = contentType ?? 'application/octet-stream';
    h['content-length'] = String(body.length);
  } else if (h['content-length'] === undefined) {
    h['content-length'] = '0';
  }
  r.res.writeHead(status, h);
  r.res.end(r.req.method === 'HEAD' ? undefined : body);
}

function uploadStatus(r: RegistryRequest, name: string, id: string, size: number, status: number): void {
  send(r, status, {
    location: `/v2/${name}/blobs/uploads/${id}`,
    // the last byte held, as distribution says it (0-0 before any)
    range: `0-${Math.max(0, size - 1)}`,
    'docker-upload-uuid': id,
  });
}

interface Page {
  items: string[];
  next?: string;
}

/** `n` (at most MAX_PAGE) items after `last`, and the `last` of the next page when there is one. */
function paginate(sorted: string[], url: URL): Page {
  const nText = url.searchParams.get('n');
  const last = url.searchParams.get('last');
  const after = last === null ? sorted : sorted.filter((s) => s > last);
  if (nText === null) return { items: after };
  if (!/^\d{1,9}$/.test(nText) || Number(nText) > MAX_PAGE) {
    throw new DistributionError(400, 'PAGINATION_NUMBER_INVALID', `n must be an integer from 0 to ${MAX_PAGE}`, { n: nText.slice(0, 20) });
  }
  const n = Number(nText);
  const items = after.slice(0, n);
  return after.length > n && items.length > 0 ? { items, next: items[items.length - 1] } : { items };
}

function sendPage(r: RegistryRequest, pathname: string, page: Page, json: object): void {
  const headers: Record<string, string> = {};
  if (page.next !== undefined) {
    headers.link = `<${pathname}?n=${r.url.searchParams.get('n')}&last=${encodeURIComponent(page.next)}>; rel="next"`;
  }
  send(r, 200, headers, Buffer.from(JSON.stringify(json)), 'application/json');
}

/** The one range of a `Range: bytes=a-b` header within `size`; undefined without one; 416 when it cannot be served. */
function byteRange(text: string | undefined, size: number): { start: number; end: number } | undefined {
  if (text === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(text.trim());
  if (!m || (m[1] === '' && m[2] === '')) throw new DistributionError(416, 'RANGE_INVALID', `unsupported Range ${JSON.stringify(text.slice(0, 100))}`);
  let start: number;
  let end: number;
  if (m[1] === '') {
    // the last N bytes
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) throw new DistributionError(416, 'RANGE_INVALID', `range ${text} is outside the blob's ${size} bytes`);
  return { start, end };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function hasBody(req: IncomingMessage): boolean {
  const length = header(req, 'content-length');
  return (length !== undefined && length !== '0') || header(req, 'transfer-encoding') !== undefined;
}

/** The whole request body, refusing more than `max` bytes (413) before reading them. */
async function readCapped(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(header(req, 'content-length') ?? NaN);
  if (declared > max) throw new DistributionError(413, 'SIZE_INVALID', `the manifest is larger than ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new DistributionError(413, 'SIZE_INVALID', `the manifest is larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
