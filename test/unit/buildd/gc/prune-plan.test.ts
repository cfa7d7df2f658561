import { planPrune } from '../../../../buildd/gc/prune-plan';
import { matchesFilters, parseRecordFilters } from '../../../../buildd/gc/record-filter';
import type { UsageRecord } from '../../../../buildd/gc/usage-record';
import { parseDuration, parseStorage } from '../../../../buildctl/cache-flags';
import { humanSize } from '../../../../buildd/locals/transfer-progress';

function rec(id: string, lastUsedAt: number, size: number, extra: Partial<UsageRecord> = {}): UsageRecord {
  return { id, type: 'regular', size, createdAt: lastUsedAt, lastUsedAt, usageCount: 1, description: `step ${id}`, inUse: false, shared: false, mutable: false, ...extra };
}

describe('planPrune', () => {
  // base <- a <- a2 ; base <- b ; c alone
  const records = [
    rec('base', 1, 100, { shared: true }),
    rec('a', 5, 10, { parent: 'base', shared: true }),
    rec('a2', 2, 10, { parent: 'a' }),
    rec('b', 3, 10, { parent: 'base' }),
    rec('c', 4, 10),
  ];

  it('removes leaves first, least recently used first, a parent once its children are gone', () => {
    expect(planPrune(records, {}).map((r) => r.id)).toEqual(['a2', 'b', 'c', 'a', 'base']);
  });

  it('stops as soon as what is left fits keepBytes', () => {
    // 140 in all: a2 (10) then b (10) leave 120
    expect(planPrune(records, { keepBytes: 120 }).map((r) => r.id)).toEqual(['a2', 'b']);
    expect(planPrune(records, { keepBytes: 1000 })).toEqual([]);
  });

  it('keeps what is in use and everything it is layered on', () => {
    const held = records.map((r) => (r.id === 'a2' ? { ...r, inUse: true } : r));
    expect(planPrune(held, {}).map((r) => r.id)).toEqual(['b', 'c']);
  });

  it('keeps what was used within keepDuration', () => {
    expect(planPrune(records, { keepDurationMs: 7 }, 10).map((r) => r.id)).toEqual(['a2']);
  });

  it('takes only what the filters pick, and never a parent whose children stay', () => {
    expect(planPrune(records, { filters: parseRecordFilters(['id!=a2']) }).map((r) => r.id)).toEqual(['b', 'c']);
    expect(planPrune(records, { filters: parseRecordFilters(['description~=^step (b|base)$']) }).map((r) => r.id)).toEqual(['b']);
  });
});

describe('record filters', () => {
  it('match with ==, =, != and ~=', () => {
    const r = rec('x1', 1, 1, { type: 'source.local', description: 'kept build context (3 entries)' });
    expect(matchesFilters(r, parseRecordFilters(['type=source.local']))).toBe(true);
    expect(matchesFilters(r, parseRecordFilters(['type==regular']))).toBe(false);
    expect(matchesFilters(r, parseRecordFilters(['type!=regular', 'description~=context', 'inuse==false']))).toBe(true);
  });

  it('refuse an unknown key, a malformed filter and a bad regexp, naming them', () => {
    expect(() => parseRecordFilters(['colour==red'])).toThrow(/unknown key colour/);
    expect(() => parseRecordFilters(['type'])).toThrow(/expected key==value/);
    expect(() => parseRecordFilters(['id~=('])).toThrow(/id~=\(/);
  });
});

describe('buildctl cache flags', () => {
  it('reads Go durations', () => {
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('10')).toBe(10_000);
    expect(() => parseDuration('1d')).toThrow(/Go duration/);
  });

  it('reads --keep-storage as megabytes or with a unit', () => {
    expect(parseStorage('512')).toBe(512_000_000);
    expect(parseStorage('0.5')).toBe(500_000);
    expect(parseStorage('10GB')).toBe(10_000_000_000);
    expect(parseStorage('512MiB')).toBe(512 * 1024 * 1024);
    expect(parseStorage('100kb')).toBe(100_000);
    expect(() => parseStorage('lots')).toThrow(/Cannot use size/);
  });

  it('prints sizes as BuildKit does', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(8192)).toBe('8.192kB');
    expect(humanSize(82_700_000)).toBe('82.7MB');
  });
});
