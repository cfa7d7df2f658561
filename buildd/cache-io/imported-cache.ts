import type { CacheSource } from '../../solver/cache-source';
import type { CacheRecordEntry } from '../../solver/cache-io/cache-config';
import type { OpResult } from '../../solver/worker';
import type { CacheLoader, ImportedIndex } from './cache-loader';

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

  /** The layers of record `key`, base first, as diff IDs and creation times (undefined: no such record). */
  chainOf(key: string): Array<{ diffId: string; createdAt: string }> | undefined {
    return this.records.get(key)?.chain.map((e) => ({ diffId: this.index.config.layers[e.layer].diffId, createdAt: e.createdAt }));
  }

  async load(key: string, signal: AbortSignal): Promise<OpResult> {
    const record = this.records.get(key);
    if (record === undefined) throw new Error(`Cannot load ${key} from ${this.name}: it has no such record`);
    return { kind: 'snapshot', id: await this.loader.load(this.index, record, signal) };
  }
}
