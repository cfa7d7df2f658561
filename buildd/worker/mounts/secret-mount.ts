import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import type { SecretMount } from '../../../solver/op';
import type { SessionAttachables } from '../../../solver/worker';
import type { OciMount } from '../oci-spec';

/** What a step's secrets become: files bound into the container, and variables. */
export interface PreparedSecrets {
  mounts: OciMount[];
  /** `NAME=value` of the secrets with `env`; only ever in memory and in the container's environment */
  env: string[];
}

/**
 * Asks the client for each secret of a step and writes the ones with a target as files in
 * `dir` (a tmpfs directory of this step, see SecretsDir) with their mode and owner, bound
 * read-only at the target. A secret the client does not have fails the step when required and
 * is left out otherwise (no file, no variable), as BuildKit does. The value is never logged
 * nor kept: the buffer is zeroed once written.
 */
export async function prepareSecrets(specs: readonly SecretMount[], session: SessionAttachables | undefined, dir: string, signal: AbortSignal): Promise<PreparedSecrets> {
  const mounts: OciMount[] = [];
  const env: string[] = [];
  for (const [i, spec] of specs.entries()) {
    if (!session) throw new BuildError('failed-precondition', `Cannot mount secret ${spec.id}: the build has no client session`);
    const value = await session.secret(spec.id, signal);
    if (value === undefined) {
      if (spec.required) throw new BuildError('not-found', `Cannot mount secret ${spec.id}: not found (give it with buildctl build --secret id=${spec.id},src=FILE or env=VAR)`);
      continue;
    }
    try {
      if (spec.env !== undefined) env.push(`${spec.env}=${value.toString('utf8')}`);
      if (spec.target !== undefined) {
        const file = path.join(dir, `secret-${i}`);
        await fsp.writeFile(file, value, { mode: 0o600, flag: 'wx' });
        await fsp.chown(file, spec.uid, spec.gid);
        await fsp.chmod(file, spec.mode);
        mounts.push({ destination: spec.target, type: 'bind', source: file, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
      }
    } finally {
      value.fill(0);
    }
  }
  return { mounts, env };
}
