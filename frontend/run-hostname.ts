import { BuildError } from '../solver/build-error';
import { hostnameSchema } from '../solver/op';

/**
 * The hostname of every RUN, as BuildKit's dockerui reads it: `--opt hostname=NAME`, else
 * `--opt build-arg:BUILDKIT_SANDBOX_HOSTNAME=NAME`; undefined (the executor's buildkitsandbox)
 * when neither is given or the value is empty. A name runc could not set fails the build here,
 * before anything runs.
 */
export function parseHostnameOpt(attrs: Readonly<Record<string, string>>): string | undefined {
  const key = attrs['hostname'] !== undefined ? 'hostname' : 'build-arg:BUILDKIT_SANDBOX_HOSTNAME';
  const value = attrs[key];
  if (value === undefined || value === '') return undefined;
  const parsed = hostnameSchema.safeParse(value);
  if (!parsed.success) {
    throw new BuildError('invalid-argument', `Cannot use --opt ${key}=${value}: ${parsed.error.issues[0]?.message ?? 'invalid hostname'}`);
  }
  return parsed.data;
}
