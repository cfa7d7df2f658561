import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import { prepareSecrets } from '../../../../buildd/worker/mounts/secret-mount';
import { SecretsDir } from '../../../../buildd/worker/mounts/secrets-dir';
import { prepareSshAgents } from '../../../../buildd/worker/mounts/ssh-mount';
import type { SessionAttachables } from '../../../../solver/worker';

/** A session over fixed values; remembers the buffers it handed out. */
function fakeSession(secrets: Record<string, string>, sshIds: string[] = [], connect?: () => Duplex): SessionAttachables & { given: Buffer[] } {
  const given: Buffer[] = [];
  return {
    given,
    secret: async (id) => {
      if (!(id in secrets)) return undefined;
      const b = Buffer.from(secrets[id] as string);
      given.push(b);
      return b;
    },
    hasSshAgent: (id) => sshIds.includes(id),
    forwardsCredentials: false,
    registryCredentials: async () => undefined,
    connectSshAgent: () => (connect ? connect() : new PassThrough()),
  };
}

describe('secret and ssh mounts of a step', () => {
  let tmp: string;
  let dir: string;
  const signal = new AbortController().signal;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join('/dev/shm', 'buildd-unit-'));
    dir = path.join(tmp, 'step');
    await fsp.mkdir(dir, { mode: 0o700 });
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('writes file secrets with their mode and owner, bound read-only at the target; env secrets are variables only; the buffers are zeroed', async () => {
    const session = fakeSession({ token: 'T0K', npm: 'NPM' });
    const out = await prepareSecrets([
      { id: 'token', target: '/run/secrets/token', required: false, mode: 0o440, uid: 1000, gid: 1001 },
      { id: 'npm', env: 'NPM_TOKEN', required: true, mode: 0o400, uid: 0, gid: 0 },
      { id: 'absent', target: '/run/secrets/absent', required: false, mode: 0o400, uid: 0, gid: 0 },
    ], session, dir, signal);
    expect(out.env).toEqual(['NPM_TOKEN=NPM']);
    expect(out.mounts).toEqual([{ destination: '/run/secrets/token', type: 'bind', source: path.join(dir, 'secret-0'), options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] }]);
    const st = await fsp.stat(path.join(dir, 'secret-0'));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o440, 1000, 1001]);
    expect(await fsp.readFile(path.join(dir, 'secret-0'), 'utf8')).toBe('T0K');
    expect(await fsp.readdir(dir)).toEqual(['secret-0']);
    expect(session.given.every((b) => b.every((x) => x === 0))).toBe(true);
  });

  it('a required secret the client does not have fails, naming the id', async () => {
    await expect(prepareSecrets([{ id: 'needed', target: '/s', required: true, mode: 0o400, uid: 0, gid: 0 }], fakeSession({}), dir, signal)).rejects.toMatchObject({
      code: 'not-found',
      message: 'Cannot mount secret needed: not found (give it with buildctl build --secret id=needed,src=FILE or env=VAR)',
    });
  });

  it('ssh: a socket per forwarded agent with its mode and owner, relayed to the session; required and missing fails', async () => {
    const relayed = new PassThrough();
    const session = fakeSession({}, ['default'], () => relayed);
    const agents = await prepareSshAgents([
      { id: 'default', target: '/run/buildkit/ssh_agent.0', required: false, mode: 0o660, uid: 1000, gid: 0 },
      { id: 'absent', target: '/run/buildkit/ssh_agent.1', required: false, mode: 0o600, uid: 0, gid: 0 },
    ], session, dir);
    const sock = path.join(dir, 'ssh-0.sock');
    expect(agents.mounts).toEqual([{ destination: '/run/buildkit/ssh_agent.0', type: 'bind', source: sock, options: ['rbind', 'nosuid', 'nodev', 'noexec'] }]);
    const st = await fsp.stat(sock);
    expect([st.isSocket(), st.mode & 0o777, st.uid]).toEqual([true, 0o660, 1000]);
    // what a process writes to the socket reaches the session's channel
    const conn = net.createConnection(sock);
    const got = new Promise<string>((resolve) => relayed.once('data', (d: Buffer) => resolve(d.toString())));
    conn.write('hello agent');
    expect(await got).toBe('hello agent');
    conn.destroy();
    await agents.close();
    await expect(prepareSshAgents([{ id: 'deploy', target: '/x', required: true, mode: 0o600, uid: 0, gid: 0 }], session, dir)).rejects.toMatchObject({
      code: 'not-found',
      message: 'Cannot mount ssh agent deploy: not found (forward it with buildctl build --ssh deploy)',
    });
  });

  it('SecretsDir: per daemon root, sweeps what a killed daemon left, refuses a base that is not on a tmpfs', async () => {
    const a = SecretsDir.forDaemon('/var/lib/buildd-a/tmp', tmp);
    expect(a.base).not.toBe(SecretsDir.forDaemon('/var/lib/buildd-b/tmp', tmp).base);
    await fsp.mkdir(path.join(a.base, 'left'), { recursive: true });
    await fsp.writeFile(path.join(a.base, 'left', 'secret-0'), 'old');
    const step = await a.stepDir();
    const other = await a.stepDir();
    expect((await fsp.readdir(a.base)).sort()).toEqual([path.basename(step.path), path.basename(other.path)].sort());
    await step.release();
    expect(await fsp.readdir(a.base)).toEqual([path.basename(other.path)]);
    // the last step out removes the base: an idle daemon leaves nothing behind
    await other.release();
    expect(await fsp.stat(a.base).catch(() => 'gone')).toBe('gone');

    const onDisk = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-unit-'));
    try {
      const notTmpfs = new SecretsDir(path.join(onDisk, 'secrets'));
      // only where the test machine's temp dir is on a disk, as on this one
      if ((await fsp.statfs(onDisk)).type !== 0x01021994) {
        await expect(notTmpfs.stepDir()).rejects.toMatchObject({ code: 'failed-precondition', message: `Cannot keep secrets in memory: ${onDisk} is not a tmpfs` });
      }
    } finally {
      await fsp.rm(onDisk, { recursive: true, force: true });
    }
  });
});
