import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { z } from 'zod';
import { readJsonFile } from './json-file';

/** The parts of an image config the comparison reads; the rest passes through unread. */
export const ImageConfigSchema = z
  .object({
    architecture: z.string().optional(),
    os: z.string().optional(),
    variant: z.string().optional(),
    config: z.record(z.unknown()).nullish(),
    history: z
      .array(z.object({ created_by: z.string().optional(), empty_layer: z.boolean().optional() }).passthrough())
      .nullish(),
  })
  .passthrough();
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

const Digest = z.string().regex(/^sha(256:[a-f0-9]{64}|512:[a-f0-9]{128})$/, 'not a sha256 or sha512 digest');
const Descriptor = z
  .object({ digest: Digest, platform: z.object({ architecture: z.string(), os: z.string(), variant: z.string().optional() }).passthrough().optional() })
  .passthrough();
const OciIndex = z.object({ manifests: z.array(Descriptor).min(1) }).passthrough();
const OciManifest = z.object({ config: Descriptor, layers: z.array(Descriptor) }).passthrough();
/** An index (it has `manifests`) or an image manifest (`config` and `layers`). */
const IndexOrManifest = z.union([OciIndex, OciManifest]).transform((doc) => ('config' in doc && 'layers' in doc && !('manifests' in doc) ? { manifest: doc as z.infer<typeof OciManifest> } : { index: doc as z.infer<typeof OciIndex> }));
const DockerManifest = z.array(z.object({ Config: z.string(), Layers: z.array(z.string()) }).passthrough()).min(1);

/**
 * An image read from an archive: its config and its layer blobs as files, in order.
 *
 * Lifecycle: {@link openImageArchive} unpacks a tar into a temporary directory (a directory
 * is read in place); `close()` removes that directory. The layer files are valid until then.
 */
export interface ImageArchive {
  config: ImageConfig;
  /** Layer blobs, bottom first, as stored: gzip, zstd or plain tar. */
  layers: string[];
  close(): Promise<void>;
}

/**
 * Opens a docker-archive (what `docker save` and `--output type=docker` write) or an OCI image
 * layout (a tar of one, as `--output type=oci`, or a directory). In an index the linux/amd64
 * manifest is taken, else the first, as the shared kit's comparison does.
 */
export async function openImageArchive(source: string): Promise<ImageArchive> {
  const isDir = (await fsp.stat(source)).isDirectory();
  const root = isDir ? source : await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-conformance-image-'));
  const close = async (): Promise<void> => {
    if (!isDir) await fsp.rm(root, { recursive: true, force: true });
  };
  try {
    const links = isDir ? new Map<string, string>() : await unpackOuterTar(source, root);
    const member = (name: string): string => path.join(root, resolveMember(name, links));
    const exists = (name: string): Promise<boolean> => fsp.access(member(name)).then(() => true, () => false);
    const blob = (digest: string): string => member(`blobs/${digest.replace(':', '/')}`);
    if ((await exists('oci-layout')) && (await exists('index.json'))) {
      let desc = pick((await readJsonFile(member('index.json'), OciIndex, `${source}: index.json`)).manifests);
      for (let depth = 0; ; depth++) {
        if (depth > 4) throw new Error(`Cannot read ${source}: indexes nest deeper than 4`);
        const doc = await readJsonFile(blob(desc.digest), IndexOrManifest, `${source}: ${desc.digest}`);
        if (doc.index) {
          desc = pick(doc.index.manifests);
          continue;
        }
        const manifest = doc.manifest;
        const config = await readJsonFile(blob(manifest.config.digest), ImageConfigSchema, `${source}: config ${manifest.config.digest}`);
        return { config, layers: manifest.layers.map((l) => blob(l.digest)), close };
      }
    }
    if (await exists('manifest.json')) {
      const [manifest] = await readJsonFile(member('manifest.json'), DockerManifest, `${source}: manifest.json`);
      const config = await readJsonFile(member(manifest.Config), ImageConfigSchema, `${source}: ${manifest.Config}`);
      return { config, layers: manifest.Layers.map(member), close };
    }
    throw new Error(`Cannot read ${source}: it is neither an OCI image layout nor a docker archive`);
  } catch (err) {
    await close();
    throw err;
  }
}

function pick<T extends z.infer<typeof Descriptor>>(manifests: T[]): T {
  return manifests.find((m) => m.platform?.architecture === 'amd64') ?? manifests[0];
}

/** `name` without `./`, `/` or `..` that leaves the archive: a member path relative to its root. */
function cleanMember(name: string): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

/**
 * A member path with the archive's symlinks followed inside the archive (docker save may link
 * a layer to one written before). Bounded: a loop of links fails.
 */
function resolveMember(name: string, links: Map<string, string>): string {
  let current = cleanMember(name);
  for (let hops = 0; hops < 40; hops++) {
    const parts = current.split('/');
    let i = 1;
    while (i <= parts.length && !links.has(parts.slice(0, i).join('/'))) i++;
    if (i > parts.length) return current;
    const prefix = parts.slice(0, i).join('/');
    const target = links.get(prefix) as string;
    const base = target.startsWith('/') ? target : `${path.posix.dirname(prefix)}/${target}`;
    current = cleanMember([base, ...parts.slice(i)].join('/'));
  }
  throw new Error(`Cannot read archive member ${name}: too many symbolic links`);
}

/** Writes the regular files of a tar under `root`; gives its symlinks (member -> target) to follow by hand. */
async function unpackOuterTar(file: string, root: string): Promise<Map<string, string>> {
  const links = new Map<string, string>();
  const extract = tar.extract();
  const feeding = pipeline(createReadStream(file), extract);
  feeding.catch((err: unknown) => extract.destroy(err instanceof Error ? err : new Error(String(err))));
  for await (const entry of extract) {
    const name = cleanMember(entry.header.name);
    const type = entry.header.type;
    if (name !== '' && (type === 'file' || type === 'contiguous-file')) {
      const dest = path.join(root, name);
      await fsp.mkdir(path.dirname(dest), { recursive: true });
      await pipeline(entry, createWriteStream(dest));
      continue;
    }
    if (name !== '' && type === 'symlink') links.set(name, entry.header.linkname ?? '');
    if (name !== '' && type === 'link') links.set(name, `/${cleanMember(entry.header.linkname ?? '')}`);
    for await (const _ of entry) void _; // drained: the next entry comes after this one's data
  }
  await feeding;
  return links;
}
