/** The kinds of record du lists and prune removes, by BuildKit's names. */
export type RecordType = 'regular' | 'source.local' | 'exec.cachemount';

/**
 * One thing the build cache keeps on disk, as `buildctl du` shows it: a committed snapshot
 * (`regular`: a step's result or a pulled layer), a kept build context (`source.local`) or a
 * cache mount (`exec.cachemount`). Times are milliseconds since the epoch.
 */
export interface UsageRecord {
  id: string;
  type: RecordType;
  /** the snapshot this one is layered on */
  parent?: string;
  /** bytes on disk (allocated blocks) */
  size: number;
  createdAt: number;
  lastUsedAt: number;
  usageCount: number;
  description: string;
  /** a running build holds it (or something layered on it): prune leaves it */
  inUse: boolean;
  /** another record is layered on it */
  shared: boolean;
  /** changes after it is made (cache mounts) */
  mutable: boolean;
}
