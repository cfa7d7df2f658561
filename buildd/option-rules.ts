import { suggest } from '../frontend/suggest';

/**
 * What buildd knows about one option key (`--opt` of a frontend, an attribute of `--output`):
 * implemented, or known to BuildKit but not built here yet. A key no rule matches is
 * unknown. The daemon checks keys, not the client: it knows what it implements, so a client of
 * any age sees the same warnings.
 */
export interface OptionRule {
  /** the key, or with `prefix` a key prefix such as `build-arg:` or `annotation.` */
  key: string;
  prefix?: boolean;
  /** known to BuildKit, ignored here; absent means implemented */
  unsupported?: {
    /** values that ask for what buildd does anyway (`compression=gzip`): no warning for them */
    asBuilt?: (value: string) => boolean;
    /** replaces "and was ignored" in the warning: what happens instead */
    note?: string;
  };
}

/** One key that is not fully honoured, ready to be worded by its caller. */
export type OptionFinding =
  | { kind: 'unknown'; key: string; suggestion?: string }
  | { kind: 'unsupported'; key: string; value: string; showValue: boolean; note?: string };

/**
 * The keys of `attrs` that are unknown (with the nearest known key when one is close enough to
 * be a typo) or known but not supported yet, in key order so that warnings are stable.
 */
export function checkOptions(attrs: Record<string, string>, rules: readonly OptionRule[]): OptionFinding[] {
  const findings: OptionFinding[] = [];
  for (const key of Object.keys(attrs).sort()) {
    const value = attrs[key] as string;
    const rule = ruleFor(key, rules);
    if (rule === undefined) {
      const suggestion = suggest(key, candidatesFor(key, rules));
      findings.push(suggestion === undefined ? { kind: 'unknown', key: printable(key) } : { kind: 'unknown', key: printable(key), suggestion: printable(suggestion) });
      continue;
    }
    const u = rule.unsupported;
    if (u === undefined || u.asBuilt?.(value)) continue;
    findings.push({ kind: 'unsupported', key: printable(key), value: printable(value), showValue: u.asBuilt !== undefined, ...(u.note ? { note: u.note } : {}) });
  }
  return findings;
}

/** Keys and values come from the client and end up on a terminal: quote anything unusual. */
function printable(text: string): string {
  return /^[\w.:/@+\[\]-]{1,200}$/.test(text) ? text : JSON.stringify(text.length > 200 ? text.slice(0, 200) + '...' : text);
}

/** The exact rule for `key`, else the longest prefix that leaves something after it. */
function ruleFor(key: string, rules: readonly OptionRule[]): OptionRule | undefined {
  const exact = rules.find((r) => !r.prefix && r.key === key);
  if (exact) return exact;
  let best: OptionRule | undefined;
  for (const r of rules) {
    if (r.prefix && key.startsWith(r.key) && key.length > r.key.length && r.key.length > (best?.key.length ?? 0)) best = r;
  }
  return best;
}

/**
 * Every exact key, and each prefix completed with the rest of `key` after its own first
 * separator: `build-args:FOO` is then one edit from `build-arg:FOO`.
 */
function candidatesFor(key: string, rules: readonly OptionRule[]): string[] {
  const out: string[] = [];
  for (const r of rules) {
    if (!r.prefix) {
      out.push(r.key);
      continue;
    }
    const sep = r.key[r.key.length - 1] as string;
    const at = key.indexOf(sep);
    if (at > 0 && at < key.length - 1) out.push(r.key + key.slice(at + 1));
  }
  return out;
}
