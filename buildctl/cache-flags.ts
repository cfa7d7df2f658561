import { BuildError } from '../solver/build-error';

/**
 * A Go duration as BuildKit's --keep-duration takes it ("24h", "1h30m", "90s", "500ms"), in
 * milliseconds; a bare number is seconds.
 */
export function parseDuration(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (!m) throw new BuildError('invalid-argument', `Cannot use duration ${JSON.stringify(text)}: expected a Go duration such as 24h, 1h30m or 90s`);
    total += Number(m[1]) * (unit[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  if (text.length === 0) throw new BuildError('invalid-argument', 'Cannot use an empty duration');
  return Math.round(total);
}

/**
 * --keep-storage: a number of megabytes as BuildKit's buildctl takes it ("512", "1.5"), or a
 * size with a unit ("10GB", "512MiB", "100mb"), in bytes.
 */
export function parseStorage(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(text.trim());
  if (!m) throw new BuildError('invalid-argument', `Cannot use storage size ${JSON.stringify(text)}: expected megabytes (512) or a size with a unit (10GB, 512MiB)`);
  const n = Number(m[1]);
  const u = (m[2] ?? '').toLowerCase();
  if (u === '') return Math.round(n * 1e6);
  const power = { b: 0, k: 1, m: 2, g: 3, t: 4 }[u[0] as 'b' | 'k' | 'm' | 'g' | 't'];
  const base = u.includes('i') ? 1024 : 1000;
  return Math.round(n * base ** power);
}
