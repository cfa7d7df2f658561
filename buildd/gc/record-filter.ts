import { BuildError } from '../../solver/build-error';
import type { UsageRecord } from './usage-record';

/** Keys a filter may test, as BuildKit's du/prune filters name them. */
const KEYS = ['id', 'type', 'description', 'parent', 'inuse', 'shared', 'mutable'] as const;
type Key = (typeof KEYS)[number];

/** One `--filter` of du or prune: `key==value`, `key=value`, `key!=value` or `key~=regexp`. */
export interface RecordFilter {
  key: Key;
  op: '==' | '!=' | '~=';
  value: string;
  regexp?: RegExp;
}

/**
 * Parses du/prune filters (containerd's filter syntax as buildctl passes it; `=` is `==`).
 * Several filters must all match. An unknown key or a bad regexp is an error naming it.
 */
export function parseRecordFilters(filters: readonly string[]): RecordFilter[] {
  return filters.map((text) => {
    const m = /^([a-z.]+)\s*(==|!=|~=|=)\s*(.*)$/.exec(text.trim());
    if (!m) throw new BuildError('invalid-argument', `Cannot use filter ${JSON.stringify(text)}: expected key==value, key!=value or key~=regexp`);
    const [, key, rawOp, value] = m as unknown as [string, string, string, string];
    if (!(KEYS as readonly string[]).includes(key)) throw new BuildError('invalid-argument', `Cannot use filter ${JSON.stringify(text)}: unknown key ${key} (known: ${KEYS.join(', ')})`);
    const op = rawOp === '=' ? '==' : (rawOp as RecordFilter['op']);
    if (op !== '~=') return { key: key as Key, op, value };
    try {
      return { key: key as Key, op, value, regexp: new RegExp(value) };
    } catch (err) {
      throw new BuildError('invalid-argument', `Cannot use filter ${JSON.stringify(text)}: ${(err as Error).message}`);
    }
  });
}

export function matchesFilters(r: UsageRecord, filters: readonly RecordFilter[]): boolean {
  return filters.every((f) => {
    const actual = fieldOf(r, f.key);
    if (f.op === '~=') return f.regexp?.test(actual) ?? false;
    return f.op === '==' ? actual === f.value : actual !== f.value;
  });
}

function fieldOf(r: UsageRecord, key: Key): string {
  switch (key) {
    case 'id':
      return r.id;
    case 'type':
      return r.type;
    case 'description':
      return r.description;
    case 'parent':
      return r.parent ?? '';
    case 'inuse':
      return String(r.inUse);
    case 'shared':
      return String(r.shared);
    case 'mutable':
      return String(r.mutable);
  }
}
