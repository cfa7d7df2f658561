import type { ExecOp } from '../../../solver/op';
import type { OpContext } from '../../../solver/worker';
import type { ExecRequest } from '../executor';
import { prepareSecrets } from './secret-mount';
import type { SecretsDir } from './secrets-dir';
import { prepareSshAgents } from './ssh-mount';

/** What a RUN borrows from the client, ready for the executor. */
export interface SessionMounts {
  /** the ExecRequest fields: sessionMounts, secretEnv, privateDir */
  request: Pick<ExecRequest, 'sessionMounts' | 'secretEnv' | 'privateDir'>;
  /** Closes the ssh sockets and removes the step's secrets directory; call once the container is gone. */
  release(): Promise<void>;
}

const NONE: SessionMounts = { request: {}, release: () => Promise.resolve() };

/**
 * Prepares the secret and ssh mounts of an exec op in a fresh tmpfs directory of the step
 * (SecretsDir); a step without them costs nothing. On failure everything made is released.
 */
export async function prepareSessionMounts(op: ExecOp, ctx: OpContext, secretsDir: SecretsDir): Promise<SessionMounts> {
  const secrets = op.secrets ?? [];
  const ssh = op.ssh ?? [];
  if (secrets.length === 0 && ssh.length === 0) return NONE;
  const dir = await secretsDir.stepDir();
  let closeSsh = (): Promise<void> => Promise.resolve();
  try {
    const s = await prepareSecrets(secrets, ctx.session, dir.path, ctx.signal);
    const agents = await prepareSshAgents(ssh, ctx.session, dir.path);
    closeSsh = agents.close;
    return {
      request: { sessionMounts: [...s.mounts, ...agents.mounts], secretEnv: s.env, privateDir: dir.path },
      release: async () => {
        await closeSsh();
        await dir.release();
      },
    };
  } catch (err) {
    await closeSsh();
    await dir.release();
    throw err;
  }
}
