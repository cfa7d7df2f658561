import { matchesFilters, type RecordFilter } from './record-filter';
import type { UsageRecord } from './usage-record';

/** What a prune may remove (BuildKit's prune options). */
export interface PruneOptions {
  /** BuildKit's "include internal records": buildd keeps none, so it changes nothing today */
  all?: boolean;
  /** keep what was used within this long */
  keepDurationMs?: number;
  /** stop once everything left takes at most this many bytes */
  keepBytes?: number;
  filters?: readonly RecordFilter[];
}

/**
 * Which records a prune removes, in the order to remove them: least recently used first,
 * never a record in use or one something kept is layered on (a parent goes only after its
 * children, so it becomes a candidate once they are gone). With keepBytes it stops as soon
 * as what is left fits; without, it takes every candidate. Pure: the caller removes.
 */
export function planPrune(records: readonly UsageRecord[], opts: PruneOptions, now: number = Date.now()): UsageRecord[] {
  const cutoff = opts.keepDurationMs === undefined ? Infinity : now - opts.keepDurationMs;
  const eligible = (r: UsageRecord): boolean => !r.inUse && r.lastUsedAt < cutoff && matchesFilters(r, opts.filters ?? []);
  const children = new Map<string, number>();
  for (const r of records) if (r.parent !== undefined) children.set(r.parent, (children.get(r.parent) ?? 0) + 1);
  const byId = new Map(records.map((r) => [r.id, r]));
  let total = records.reduce((sum, r) => sum + r.size, 0);
  const heap = new MinHeap<UsageRecord>((a, b) => a.lastUsedAt - b.lastUsedAt || a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const r of records) if ((children.get(r.id) ?? 0) === 0 && eligible(r)) heap.push(r);
  const plan: UsageRecord[] = [];
  for (;;) {
    if (opts.keepBytes !== undefined && total <= opts.keepBytes) break;
    const next = heap.pop();
    if (next === undefined) break;
    plan.push(next);
    total -= next.size;
    if (next.parent === undefined) continue;
    const left = (children.get(next.parent) ?? 1) - 1;
    children.set(next.parent, left);
    const parent = byId.get(next.parent);
    if (left === 0 && parent !== undefined && eligible(parent)) heap.push(parent);
  }
  return plan;
}

/** A binary min-heap: the planner's least-recently-used leaf in O(log n). */
class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => number) {}

  push(item: T): void {
    const a = this.items;
    a.push(item);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (this.less(a[i] as T, a[p] as T) >= 0) break;
      [a[i], a[p]] = [a[p] as T, a[i] as T];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop() as T;
    if (a.length > 0) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l] as T, a[m] as T) < 0) m = l;
        if (r < a.length && this.less(a[r] as T, a[m] as T) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m] as T, a[i] as T];
        i = m;
      }
    }
    return top;
  }
}
