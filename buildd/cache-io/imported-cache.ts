import type { CacheSource } from '../../solver/cache-source';
import type { CacheRecordEntry } from '../../solver/cache-io/cache-config';
import type { OpResult } from '../../solver/worker';
import type { BlobFetch, CacheLoader, ImportedIndex } from './cache-loader';
import type { CacheLayer } from '../../solver/cache-io/cache-config';
import type { Descriptor } from '../../store/manifest';

/** One layer of an imported record: its cache entry, its blob and when it was made. */
export interface ImportedLayer {
  layer: CacheLayer;
  blob: Descriptor;
  createdAt: string;
}

/**
 * One --import-cache of one build: the records of its index by key, loaded through the
 * daemon's CacheLoader when the solver reads one. Lifecycle: opened before the build's solve,
 * dropped with the build.
 */
export class ImportedCache implements CacheSource {
  private readonly records: Map<string, CacheRecordEntry>;

  constructor(private readonly index: ImportedIndex, private readonly loader: CacheLoader) {
    this.records = new Map(index.config.records.map((r) => [r.key, r]));
  }

  get name(): string {
    return this.index.name;
  }

  get size(): number {
    return this.records.size;
  }

  has(key: string): boolean {
    return this.records.has(key);
  }

  /** The layers of record `key`, base first, with their blobs and creation times (undefined: no such record). */
  chainOf(key: string): ImportedLayer[] | undefined {
    return this.records.get(key)?.chain.map((e) => ({ layer: this.index.config.layers[e.layer], blob: this.index.blobs[e.layer], createdAt: e.createdAt }));
  }

  /** Where the blobs come from: the import's ref, and how to download one into the content store. */
  get origin(): { ref: string; fetch: BlobFetch } {
    return { ref: this.index.ref, fetch: this.index.fetch };
  }

  async load(key: string, signal: AbortSignal): Promise<OpResult> {
    const record = this.records.get(key);
    if (record === undefined) throw new Error(`Cannot load ${key} from ${this.name}: it has no such record`);
    return { kind: 'snapshot', id: await this.loader.load(this.index, record, signal) };
  }
}
