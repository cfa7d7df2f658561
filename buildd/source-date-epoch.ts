import { BuildError } from '../solver/build-error';

/** The latest second a JavaScript Date holds; anything beyond cannot be a timestamp. */
const MAX_EPOCH_S = 8_640_000_000_000;

/**
 * SOURCE_DATE_EPOCH of one output, as BuildKit resolves it for its exporters: the output's
 * `source-date-epoch` attribute wins (empty means none), else the frontend's value (`arg`: the
 * build arg, or the Dockerfile's global `ARG SOURCE_DATE_EPOCH=` default). Decimal seconds since
 * 1970, as Go's ParseInt reads them. Undefined when neither is set; a value that is not one
 * fails the build saying where it came from.
 */
export function sourceDateEpoch(arg: string | undefined, outputAttrs: Readonly<Record<string, string>>): number | undefined {
  if (Object.hasOwn(outputAttrs, 'source-date-epoch')) return parseEpoch(outputAttrs['source-date-epoch'] as string, '--output attribute source-date-epoch');
  return arg === undefined ? undefined : parseEpoch(arg, 'build arg SOURCE_DATE_EPOCH');
}

function parseEpoch(value: string, where: string): number | undefined {
  if (value === '') return undefined;
  const n = /^[+-]?\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || Math.abs(n) > MAX_EPOCH_S) {
    throw new BuildError('invalid-argument', `Cannot use ${where}: ${JSON.stringify(value.slice(0, 64))} is not a number of seconds since 1970`);
  }
  return n;
}
