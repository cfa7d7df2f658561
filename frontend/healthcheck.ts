import { goQuoteList } from './go-format';

/**
 * HEALTHCHECK options as Docker reads them: Go durations (`30s`, `1m30s`, `500ms`) stored in
 * nanoseconds, and the history text BuildKit writes with Go's `%q` of the struct.
 */

/** Thrown for a bad option; the caller adds the line. */
export class HealthcheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HealthcheckError';
  }
}

const UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** time.ParseDuration, in nanoseconds; negative durations are refused (Docker does too). */
export function parseGoDuration(text: string, flag: string): number {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += parseFloat(m[1]) * UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (text === '' || matched !== text.length) throw new HealthcheckError(`invalid duration for --${flag}: "${text}" (such as 30s, 1m30s or 500ms)`);
  const ns = Math.round(total);
  if (ns !== 0 && ns < 1e6) throw new HealthcheckError(`--${flag} cannot be less than 1ms`);
  return ns;
}

/** time.Duration.String(): `1m30s`, `500ms`, `0s`. */
export function goDurationString(ns: number): string {
  if (ns === 0) return '0s';
  if (ns < 1e9) {
    if (ns < 1e3) return `${ns}ns`;
    if (ns < 1e6) return `${trim(ns / 1e3)}µs`;
    return `${trim(ns / 1e6)}ms`;
  }
  const h = Math.floor(ns / 3600e9);
  const m = Math.floor((ns % 3600e9) / 60e9);
  const s = (ns % 60e9) / 1e9;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${trim(s)}s`;
}

function trim(n: number): string {
  return String(Number(n.toFixed(9)));
}

/** strconv.QuoteRune, which is what `%q` makes of an int: 3 → `'\x03'`, 65 → `'A'`. */
export function goQuoteRune(n: number): string {
  if (n === 39) return "'\\''";
  if (n === 92) return "'\\\\'";
  const simple: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r' };
  if (simple[n]) return `'${simple[n]}'`;
  if (n >= 0x20 && n < 0x7f) return `'${String.fromCharCode(n)}'`;
  if (n < 0x80) return `'\\x${n.toString(16).padStart(2, '0')}'`;
  if (n <= 0xffff) return `'\\u${n.toString(16).padStart(4, '0')}'`;
  return `'\\U${n.toString(16).padStart(8, '0')}'`;
}

/** The config's Healthcheck as it is kept: zero fields left out, as Go's omitempty does. */
export interface HealthConfig {
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** `HEALTHCHECK &{["CMD-SHELL" "..."] "30s" "3s" "0s" '\x03'}` as the reference writes it. */
export function healthcheckHistory(h: HealthConfig): string {
  const d = (v: number | undefined): string => `"${goDurationString(v ?? 0)}"`;
  return `HEALTHCHECK &{${goQuoteList(h.Test)} ${d(h.Interval)} ${d(h.Timeout)} ${d(h.StartPeriod)} ${goQuoteRune(h.Retries ?? 0)}}`;
}
