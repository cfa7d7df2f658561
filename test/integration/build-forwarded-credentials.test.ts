import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, TestDaemon } from '../helpers/daemon';
import { startRegistry, TestRegistry } from '../helpers/registry';

const run = promisify(execFile);
const USER = 'jenkins';
const PASS = 'agent-login';

/**
 * BuildKit's auth session: the daemon has no config.json at all, and each build uses the
 * docker login of the client that asked for it (a Jenkins agent's), never another client's.
 */
describe('registry credentials forwarded from the client', () => {
  let tmp: string;
  let open: TestRegistry;
  let locked: TestRegistry;
  let daemon: TestDaemon;
  let ctx: string;
  /** a client whose $DOCKER_CONFIG holds `config` (none: an empty folder), with `bin` first on its PATH */
  const client = async (name: string, config?: unknown): Promise<NodeJS.ProcessEnv> => {
    const dir = path.join(tmp, 'clients', name);
    await fsp.mkdir(path.join(dir, 'bin'), { recursive: true });
    if (config !== undefined) await fsp.writeFile(path.join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    return { DOCKER_CONFIG: dir, PATH: `${path.join(dir, 'bin')}:${process.env.PATH ?? ''}` };
  };
  const build = (env: NodeJS.ProcessEnv, extra: string[]) =>
    runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra], env);
  const inspect = async (ref: string) =>
    JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `${USER}:${PASS}`, `docker://${ref}`])).stdout) as { Layers: string[] };

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-forwarded-'));
    open = await startRegistry();
    // Bearer tokens from a token server: what a token one build fetched could leak to another
    locked = await startRegistry({ token: { user: USER, pass: PASS } });
    const { ref } = await pushBusyboxImage(open.host);
    const base = `${locked.host}/base/busybox:1`;
    await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--dest-creds', `${USER}:${PASS}`, `docker://${ref}`, `docker://${base}`]);
    const daemonConfig = path.join(tmp, 'daemon-docker');
    await fsp.mkdir(daemonConfig);
    daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root'), env: { DOCKER_CONFIG: daemonConfig } });
    ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${base}\nRUN echo forwarded > /forwarded\n`);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await open?.stop();
    await locked?.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  test("a client's docker login pulls the base and pushes the result; the daemon has no config.json", async () => {
    await expect(fsp.access(path.join(tmp, 'daemon-docker', 'config.json'))).rejects.toThrow();
    const env = await client('logged-in', { auths: { [locked.host]: { auth: Buffer.from(`${USER}:${PASS}`).toString('base64') } } });
    const res = await build(env, ['--output', `type=image,name=${locked.host}/team/app:1,push=true`]);
    expect(res.stderr).not.toMatch(/ERROR/);
    expect(res.code).toBe(0);
    expect((await inspect(`${locked.host}/team/app:1`)).Layers).toHaveLength(2);
    // every token was asked for with the client's credentials
    expect(locked.tokenServer?.requests.filter((r) => r.scopes.some((s) => s.includes('team/app'))).every((r) => r.authenticated)).toBe(true);
  }, 120_000);

  test('the next client without a login gets nothing the previous build fetched: neither tokens nor credentials', async () => {
    const env = await client('anonymous');
    const res = await build(env, ['--no-cache', '--output', `type=image,name=${locked.host}/team/app:2,push=true`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`no credentials for ${locked.host}`);
    await expect(inspect(`${locked.host}/team/app:2`)).rejects.toThrow();
  }, 120_000);

  test("a client's credential helper (credHelpers) answers for it", async () => {
    const env = await client('helper', { credHelpers: { [locked.host]: 'citest' } });
    await fsp.writeFile(path.join(env.DOCKER_CONFIG as string, 'bin', 'docker-credential-citest'),
      `#!/bin/sh\n[ "$1" = get ] || exit 2\n[ "$(cat)" = "${locked.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\n` +
      `echo '{"ServerURL":"${locked.host}","Username":"${USER}","Secret":"${PASS}"}'\n`, { mode: 0o755 });
    const res = await build(env, ['--output', `type=image,name=${locked.host}/team/app:3,push=true`]);
    expect(res.stderr).not.toMatch(/ERROR/);
    expect(res.code).toBe(0);
    expect((await inspect(`${locked.host}/team/app:3`)).Layers).toHaveLength(2);
  }, 120_000);

  test("a client whose config.json is broken fails the build saying which file, and the daemon serves the next build", async () => {
    const env = await client('broken', '{"auths": ');
    const res = await build(env, ['--no-cache', '--output', `type=image,name=${locked.host}/team/app:4,push=true`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`Cannot get the client's credentials for ${locked.host}: Cannot read docker credentials from ${path.join(env.DOCKER_CONFIG as string, 'config.json')}: not JSON`);
    const after = await build(await client('logged-in'), ['--output', `type=image,name=${locked.host}/team/app:4,push=true`]);
    expect(after.code).toBe(0);
  }, 120_000);
});
