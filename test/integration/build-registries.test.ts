import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BusyboxImage, pushBusyboxImage } from '../helpers/busybox-image';
import { makeCerts } from '../helpers/certs';
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
    // tmp/bin on its PATH: where a test puts a credential helper while the daemon runs
    await fsp.mkdir(path.join(tmp, 'bin'));
    daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root'), env: { DOCKER_CONFIG: dockerConfig, PATH: `${path.join(tmp, 'bin')}:${process.env.PATH ?? ''}` } });
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

  test('a docker login while the daemon runs (config.json rewritten with a credential helper) is used by the next build, no restart', async () => {
    const later = await startRegistry({ htpasswd: { user: 'late', pass: 'comer' } });
    try {
      const name = `${later.host}/team/app:2`;
      const before = await build(['--output', `type=image,name=${name},push=true`]);
      expect(before.code).not.toBe(0);
      expect(before.stderr).toMatch(/no credentials for/);
      // a credential helper as docker-credential-helpers' protocol has it, and config.json naming it for this registry
      await fsp.writeFile(path.join(tmp, 'bin', 'docker-credential-citest'),
        `#!/bin/sh\n[ "$1" = get ] || exit 2\n[ "$(cat)" = "${later.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\necho '{"ServerURL":"${later.host}","Username":"late","Secret":"comer"}'\n`, { mode: 0o755 });
      const file = path.join(tmp, 'docker', 'config.json');
      const config = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, unknown>;
      await fsp.writeFile(file, JSON.stringify({ ...config, credHelpers: { [later.host]: 'citest' } }));
      const after = await build(['--output', `type=image,name=${name},push=true`]);
      expect(after.stderr).not.toMatch(/ERROR/);
      expect(after.code).toBe(0);
      const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'late:comer', `docker://${name}`]);
      expect(JSON.parse(stdout).Layers).toHaveLength(2);
    } finally {
      await later.stop();
    }
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

describe('HTTPS registries with a certificate from a private CA', () => {
  // 127.0.0.2 is loopback but not "localhost": the daemon speaks HTTPS to it unless told otherwise.
  const ADDRESS = '127.0.0.2';
  let tmp: string;
  let certDir: string;
  let trusted: TestRegistry;
  let insecure: TestRegistry;
  let unknown: TestRegistry;
  let base: BusyboxImage;
  let daemon: TestDaemon;
  const build = (dir: string, extra: string[]) =>
    runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${dir}`, '--local', `dockerfile=${dir}`, '--progress', 'plain', ...extra]);
  const context = async (name: string, from: string): Promise<string> => {
    const dir = path.join(tmp, name);
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM ${from}\nRUN echo ${name} > /built\n`);
    return dir;
  };
  /** skopeo, verifying the registry's certificate with the test CA, reads what was pushed. */
  const inspect = async (ref: string): Promise<{ Layers: string[] }> => {
    const { stdout } = await run('skopeo', ['inspect', '--cert-dir', certDir, '--tls-verify=true', `docker://${ref}`]);
    return JSON.parse(stdout) as { Layers: string[] };
  };

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-registries-https-'));
    const certs = await makeCerts(path.join(tmp, 'certs'), { sans: [`IP:${ADDRESS}`] });
    certDir = path.join(tmp, 'skopeo-certs');
    await fsp.mkdir(certDir);
    await fsp.copyFile(certs.daemon.ca, path.join(certDir, 'ca.crt'));
    // Three registries with the same certificate: the daemon trusts the CA for one, skips
    // verification for another, and knows nothing of the third.
    const tls = { certificate: certs.daemon.cert, key: certs.daemon.key };
    trusted = await startRegistry({}, { address: ADDRESS, tls });
    insecure = await startRegistry({}, { address: ADDRESS, tls });
    unknown = await startRegistry({}, { address: ADDRESS, tls });
    base = await pushBusyboxImage(trusted.host);
    await pushBusyboxImage(insecure.host);
    await pushBusyboxImage(unknown.host);
    const config = path.join(tmp, 'buildd.json');
    await fsp.writeFile(config, JSON.stringify({
      registry: { [trusted.host]: { ca: [certs.daemon.ca] }, [insecure.host]: { insecure: true } },
    }));
    daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root'), extraArgs: ['--config', config] });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await trusted?.stop();
    await insecure?.stop();
    await unknown?.stop();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('with registry.<host>.ca: the base is pulled and the image pushed over verified TLS', async () => {
    const dir = await context('trusted', base.ref);
    const name = `${trusted.host}/team/app:1`;
    const res = await build(dir, ['--output', `type=image,name=${name},push=true`]);
    expect(res.stderr).not.toMatch(/Cannot/);
    expect(res.code).toBe(0);
    expect((await inspect(name)).Layers).toEqual([base.layerDigest, expect.stringMatching(/^sha256:/)]);
  }, 120_000);

  test('without the CA: the pull fails naming the registry, the certificate and what to configure', async () => {
    const dir = await context('unknown-pull', `${unknown.host}/busybox:latest`);
    const res = await build(dir, ['--output', `type=oci,dest=${path.join(tmp, 'never.tar')}`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`Cannot pull ${unknown.host}/busybox:latest: the certificate of ${unknown.host} is not trusted (`);
    expect(res.stderr).toContain(`registry."${unknown.host}".ca`);
    expect(res.stderr).toContain(`registry."${unknown.host}".insecure`);
  }, 120_000);

  test('without the CA: the push fails the same way', async () => {
    const dir = await context('unknown-push', base.ref);
    const name = `${unknown.host}/team/app:1`;
    const res = await build(dir, ['--output', `type=image,name=${name},push=true`]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`Cannot push ${name}: the certificate of ${unknown.host} is not trusted (`);
  }, 120_000);

  test('with registry.<host>.insecure: pull and push work without verifying the certificate', async () => {
    const dir = await context('insecure', `${insecure.host}/busybox:latest`);
    const name = `${insecure.host}/team/app:1`;
    const res = await build(dir, ['--output', `type=image,name=${name},push=true`]);
    expect(res.stderr).not.toMatch(/Cannot/);
    expect(res.code).toBe(0);
    expect((await inspect(name)).Layers).toHaveLength(2);
  }, 120_000);

  test('with registry.insecure=true on the output: the push to an unconfigured HTTPS registry works', async () => {
    const dir = await context('insecure-attr', base.ref);
    const name = `${unknown.host}/attr/app:1`;
    const res = await build(dir, ['--output', `type=image,name=${name},push=true,registry.insecure=true`]);
    expect(res.stderr).not.toMatch(/Cannot/);
    expect(res.code).toBe(0);
    expect((await inspect(name)).Layers).toHaveLength(2);
  }, 120_000);
});

describe('a pulled layer that decompresses past maxLayerBytes', () => {
  let tmp: string;
  let reg: TestRegistry;
  let daemon: TestDaemon;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-max-layer-'));
    reg = await startRegistry();
    const config = path.join(tmp, 'buildd.json');
    // busybox's one layer is about 2 MB of tar
    await fsp.writeFile(config, JSON.stringify({ maxLayerBytes: 256 * 1024 }));
    daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root'), extraArgs: ['--config', config] });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await reg?.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('fails the pull saying so, and leaves no snapshot behind', async () => {
    const { ref } = await pushBusyboxImage(reg.host);
    const ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${ref}\nRUN true\n`);
    const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0',
      '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('Cannot unpack the layer: it decompresses to more than 262144 bytes, the limit of a layer (maxLayerBytes in the daemon config)');
    const snapshots = await fsp.readdir(path.join(tmp, 'root', 'snapshots')).catch(() => [] as string[]);
    const left = await Promise.all(snapshots.map((s) => fsp.readdir(path.join(tmp, 'root', 'snapshots', s)).catch(() => [])));
    expect(left.flat().filter((n) => n !== 'records')).toEqual([]);
  }, 120_000);
});
