import * as path from 'node:path';
import type { SecretMount, SshMount } from '../solver/op';
import type { RunMount } from './run-mounts';

/** The secret and ssh mounts of one RUN, as the exec op carries them. */
export interface RunSessionMounts {
  secrets: SecretMount[];
  ssh: SshMount[];
  /** `SSH_AUTH_SOCK=<first ssh target>` when the step has an ssh mount and no SSH_AUTH_SOCK of its own */
  env: string[];
}

/** BuildKit's defaults (dockerfile2llb convert_secrets.go, convert_ssh.go, llb exec.go). */
const SECRET_MODE = 0o400;
const SSH_MODE = 0o600;

/**
 * Turns the `type=secret` and `type=ssh` mounts of a RUN into the exec op's fields, with
 * BuildKit's defaults: a secret's id is its `id`, else the base name of its target; without
 * `env` it is a file at `target`, by default `/run/secrets/<id>`; with `env` and no target it is
 * only a variable. An ssh mount's id defaults to `default`, its target to
 * `/run/buildkit/ssh_agent.<n>` (n counts the RUN's ssh mounts), and the first one's target
 * becomes SSH_AUTH_SOCK unless the step already sets it. Mounts of other types are ignored.
 */
export function runSessionMounts(mounts: readonly RunMount[], stepEnv: readonly string[]): RunSessionMounts {
  const secrets: SecretMount[] = [];
  const ssh: SshMount[] = [];
  for (const m of mounts) {
    if (m.type === 'secret') {
      const id = m.id ?? (m.target === undefined ? undefined : path.posix.basename(m.target));
      // the parser already refuses a secret with neither id nor target; this keeps the types honest
      if (id === undefined || id === '') continue;
      const target = m.target ?? (m.env === undefined ? `/run/secrets/${path.posix.basename(id)}` : undefined);
      secrets.push({
        id,
        ...(target === undefined ? {} : { target: path.posix.resolve('/', target) }),
        ...(m.env === undefined ? {} : { env: m.env }),
        required: m.required ?? false,
        mode: m.mode ?? SECRET_MODE,
        uid: m.uid ?? 0,
        gid: m.gid ?? 0,
      });
    } else if (m.type === 'ssh') {
      ssh.push({
        id: m.id ?? 'default',
        target: path.posix.resolve('/', m.target ?? `/run/buildkit/ssh_agent.${ssh.length}`),
        required: m.required ?? false,
        mode: m.mode ?? SSH_MODE,
        uid: m.uid ?? 0,
        gid: m.gid ?? 0,
      });
    }
  }
  const env: string[] = [];
  if (ssh.length > 0 && !stepEnv.some((e) => e.startsWith('SSH_AUTH_SOCK='))) env.push(`SSH_AUTH_SOCK=${ssh[0]?.target ?? ''}`);
  return { secrets, ssh, env };
}
