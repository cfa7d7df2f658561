import { BuildError } from '../solver/build-error';

/** Go's strconv.ParseBool, which BuildKit uses for boolean attributes. */
export function parseGoBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}

/**
 * A boolean `--output` attribute as BuildKit's exporters read it: absent is `fallback`, an
 * empty value (`push=` or a bare key) is true, anything ParseBool does not know is an error
 * rather than a silent false.
 */
export function boolAttr(attrs: Record<string, string>, key: string, fallback: boolean): boolean {
  const value = attrs[key];
  if (value === undefined) return fallback;
  if (value === '') return true;
  const b = parseGoBool(value);
  if (b === undefined) throw new BuildError('invalid-argument', `Cannot use --output attribute ${key}=${value}: expected true or false`);
  return b;
}
