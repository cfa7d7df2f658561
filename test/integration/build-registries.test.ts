import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { freePort, startRegistry, TestRegistry } from '../helpers/registry';
import { runBuildctl, startDaemon, TestDaemon } from '../helpers/daemon';

const run = promisify(execFile);

describe('pushing with the daemon credentials, and registries that refuse or are gone', () => {
  let tmp: string;
  let open: TestRegistry;
  let locked: TestRegistry;
  let daemon: TestDaemon;
  let ctx: string;
  const build = (extra: string[]) =>
    runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain', ...extra]);

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-registries-'));
    open = await startRegistry();
    locked = await startRegistry({ htpasswd: { user: 'ci', pass: 's3cret' } });
    const { ref } = await pushBusyboxImage(open.host);
    const dockerConfig = path.join(tmp, 'docker');
    await fsp.mkdir(dockerConfig);
    await fsp.writeFile(path.join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [locked.host]: { auth: Buffer.from('ci:s3cret').toString('base64') } } }));
    daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root'), env: { DOCKER_CONFIG: dockerConfig } });
    ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${ref}\nRUN echo pushed > /pushed\n`);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await open?.stop();
    await locked?.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('push to a registry with Basic auth uses $DOCKER_CONFIG/config.json of the daemon', async () => {
    const name = `${locked.host}/team/app:1`;
    const res = await build(['--output', `type=image,name=${name},push=true`]);
    expect(res.code).toBe(0);
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'ci:s3cret', `docker://${name}`]);
    expect(JSON.parse(stdout).Layers).toHaveLength(2);
  }, 120_000);

  test('a registry that refuses our credentials gives a clear error naming it', async () => {
    const other = await startRegistry({ htpasswd: { user: 'someone', pass: 'else' } });
    try {
      const res = await build(['--output', `type=image,name=${other.host}/team/app:1,push=true`]);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain(other.host);
      expect(res.stderr).toMatch(/credential|unauthorized|401/i);
    } finally {
      await other.stop();
    }
  }, 120_000);

  test('a base image on a registry that is not there fails clearly, and the daemon serves the next build', async () => {
    const port = await freePort();
    const gone = path.join(tmp, 'gone');
    await fsp.mkdir(gone);
    await fsp.writeFile(path.join(gone, 'Dockerfile'), `FROM 127.0.0.1:${port}/nothing:here\nRUN true\n`);
    const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${gone}`, '--local', `dockerfile=${gone}`, '--output', `type=oci,dest=${path.join(tmp, 'never.tar')}`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`127.0.0.1:${port}`);
    expect(res.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
    expect((await build(['--output', `type=oci,dest=${path.join(tmp, 'next.tar')}`])).code).toBe(0);
  }, 120_000);
});
