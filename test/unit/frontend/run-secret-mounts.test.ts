import { BuildError } from '../../../solver/build-error';
import { ExecOp } from '../../../solver/op';
import { build } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';

async function execs(df: string): Promise<ExecOp[]> {
  const r = await build(df);
  return r.definition.ops.map((o) => o.op).filter((o): o is ExecOp => o.kind === 'exec');
}

describe('RUN --mount=type=secret and type=ssh become exec op fields with BuildKit defaults', () => {
  test('secret: /run/secrets/<id>, mode 0400, uid/gid 0, optional; env alone makes no file; id from the target', async () => {
    const [a, b, c, d] = await execs(`FROM ${BB}
RUN --mount=type=secret,id=token cat /run/secrets/token
RUN --mount=type=secret,id=npmrc,env=NPM_TOKEN true
RUN --mount=type=secret,target=/root/.aws/credentials,mode=0440,uid=1000,gid=1001,required=true true
RUN --mount=type=secret,id=x,target=rel/key,env=X true
`);
    expect(a.secrets).toEqual([{ id: 'token', target: '/run/secrets/token', required: false, mode: 0o400, uid: 0, gid: 0 }]);
    expect(b.secrets).toEqual([{ id: 'npmrc', env: 'NPM_TOKEN', required: false, mode: 0o400, uid: 0, gid: 0 }]);
    expect(c.secrets).toEqual([{ id: 'credentials', target: '/root/.aws/credentials', required: true, mode: 0o440, uid: 1000, gid: 1001 }]);
    expect(d.secrets).toEqual([{ id: 'x', target: '/rel/key', env: 'X', required: false, mode: 0o400, uid: 0, gid: 0 }]);
    // the value is never in the graph, and the env secret is not in the step's env
    expect(b.meta.env.some((e) => e.startsWith('NPM_TOKEN='))).toBe(false);
    expect(a.ssh).toBeUndefined();
  });

  test('ssh: id default, /run/buildkit/ssh_agent.<n>, mode 0600, SSH_AUTH_SOCK from the first unless set', async () => {
    const [a, b] = await execs(`FROM ${BB}
RUN --mount=type=ssh --mount=type=ssh,id=deploy,mode=0666,uid=5 --mount=type=ssh,id=x,target=/tmp/s,required ssh-add -l
ENV SSH_AUTH_SOCK=/mine
RUN --mount=type=ssh true
`);
    expect(a.ssh).toEqual([
      { id: 'default', target: '/run/buildkit/ssh_agent.0', required: false, mode: 0o600, uid: 0, gid: 0 },
      { id: 'deploy', target: '/run/buildkit/ssh_agent.1', required: false, mode: 0o666, uid: 5, gid: 0 },
      { id: 'x', target: '/tmp/s', required: true, mode: 0o600, uid: 0, gid: 0 },
    ]);
    expect(a.meta.env).toContain('SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0');
    expect(b.meta.env.filter((e) => e.startsWith('SSH_AUTH_SOCK='))).toEqual(['SSH_AUTH_SOCK=/mine']);
  });

  test('a RUN without them keeps its digest shape (no empty fields); a secret with neither id nor target fails', async () => {
    const [plain] = await execs(`FROM ${BB}\nRUN true\n`);
    expect(plain).not.toHaveProperty('secrets');
    expect(plain).not.toHaveProperty('ssh');
    await expect(build(`FROM ${BB}\nRUN --mount=type=secret,env=X true\n`)).rejects.toThrow(BuildError);
    await expect(build(`FROM ${BB}\nRUN --mount=type=secret,env=X true\n`)).rejects.toThrow(/a secret mount needs an id or a target \(id=NAME\)/);
  });
});
