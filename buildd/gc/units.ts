import { BuildError } from '../../solver/build-error';

/** A Go duration ("24h", "1h30m", "90s", "500ms") in milliseconds; a bare number is seconds. */
export function parseDuration(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (text.length === 0) throw new BuildError('invalid-argument', 'Cannot use an empty duration');
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (!m) throw new BuildError('invalid-argument', `Cannot use duration ${JSON.stringify(text)}: expected a Go duration such as 24h, 1h30m or 90s`);
    total += Number(m[1]) * (unit[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/**
 * A size with a unit ("10GB", "512MiB", "100kb", "42B": decimal or binary, any case) in bytes;
 * a bare number is `bareUnit` bytes each.
 */
export function parseSize(text: string, bareUnit = 1): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(text.trim());
  if (!m) throw new BuildError('invalid-argument', `Cannot use size ${JSON.stringify(text)}: expected a number of bytes or a size with a unit (10GB, 512MiB)`);
  const n = Number(m[1]);
  const u = (m[2] ?? '').toLowerCase();
  if (u === '') return Math.round(n * bareUnit);
  const power = { b: 0, k: 1, m: 2, g: 3, t: 4 }[u[0] as 'b' | 'k' | 'm' | 'g' | 't'];
  return Math.round(n * (u.includes('i') ? 1024 : 1000) ** power);
}
