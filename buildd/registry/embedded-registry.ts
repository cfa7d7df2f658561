import type { ContentStore } from '../../store/content-store';
import type { Descriptor } from '../../store/manifest';
import { MetaDb } from '../../store/meta-db';
import { BuildError } from '../../solver/build-error';
import { RepositoryRecords } from './repository-records';
import { repositoryName } from './repository-names';

/** What a build publishes into the embedded registry: a manifest already in the content store and the blobs it needs. */
export interface PublishedImage {
  repository: string;
  /** a tag, or undefined to publish by digest only */
  tag?: string;
  manifestDigest: string;
  manifestSize: number;
  mediaType: string;
  /** config and layers: all in the content store */
  blobs: readonly Pick<Descriptor, 'digest'>[];
}

/**
 * The embedded registry's state, shared by its HTTP server and the builds of the daemon: the
 * repositories (what each holds) over the daemon's content store (the bytes). A build that
 * pushes to the registry's own address publishes here directly: its blobs are linked, not
 * uploaded again.
 *
 * Lifecycle: opened once per daemon when `--registry-addr` is set; `address` is set when the
 * server has bound (undefined until then: nothing is taken for it).
 */
export class EmbeddedRegistry {
  /** `host:port` the server listens on, once bound */
  address: string | undefined;

  private constructor(
    readonly dir: string,
    readonly content: ContentStore,
    readonly repos: RepositoryRecords,
  ) {}

  /**
   * `dir`: the registry's own files (`<root>/registry`: uploads in progress); `meta`: the
   * daemon's database, which holds the repositories (without it, one of its own in `dir`).
   */
  static async open(dir: string, content: ContentStore, meta: MetaDb = MetaDb.open(dir)): Promise<EmbeddedRegistry> {
    return new EmbeddedRegistry(dir, content, RepositoryRecords.on(meta));
  }

  /**
   * Whether `registry` (the host of an image reference) names this registry: its bound
   * address, with `localhost` and `127.0.0.1` taken as the same host.
   */
  serves(registry: string): boolean {
    if (this.address === undefined) return false;
    const norm = (h: string): string => h.toLowerCase().replace(/^localhost:/, '127.0.0.1:');
    return norm(registry) === norm(this.address);
  }

  /** Links the image's blobs and manifest into its repository and tags it: what a push would leave, without sending a byte. */
  async publish(image: PublishedImage): Promise<void> {
    try {
      repositoryName(image.repository);
    } catch (err) {
      throw new BuildError('invalid-argument', `Cannot publish ${image.repository}: ${(err as Error).message}`);
    }
    for (const d of [{ digest: image.manifestDigest }, ...image.blobs]) {
      if (!(await this.content.info(d.digest))) throw new BuildError('not-found', `Cannot publish ${image.repository}: blob ${d.digest} is not in the content store`);
    }
    await this.repos.update(image.repository, (record) => {
      const linked = new Set(record.blobs);
      for (const b of image.blobs) if (!linked.has(b.digest)) record.blobs.push(b.digest);
      record.manifests.set(image.manifestDigest, { mediaType: image.mediaType, size: image.manifestSize });
      if (image.tag !== undefined) record.tags.set(image.tag, image.manifestDigest);
    });
  }
}
