import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startBuildEnv, type BuildEnv } from '../helpers/build-env';

const run = promisify(execFile);
const DOCKER = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
};

interface RawManifest {
  mediaType: string;
  config: { mediaType: string };
  layers: Array<{ mediaType: string }>;
}

/** oci-mediatypes=true|false with BuildKit's defaults, read back by skopeo and tar. */
describe('oci-mediatypes: OCI or Docker schema 2 media types', () => {
  let env: BuildEnv;
  let ctx: string;

  beforeAll(async () => {
    env = await startBuildEnv();
    ctx = path.join(env.tmp, 'ctx');
    await fsp.mkdir(ctx);
    // random data: the layer blob stores it in gzip members of its own (createAdaptiveGzip)
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nRUN echo typed > /typed && head -c 300000 /dev/urandom > /random\n`);
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  test('a push with oci-mediatypes=false is a Docker schema 2 image that skopeo copies and reads', async () => {
    const name = `${env.registry.host}/typed/docker:1`;
    const res = await env.build(ctx, ['--output', `type=image,name=${name},push=true,oci-mediatypes=false`]);
    expect(res.stderr).not.toMatch(/WARNING|ERROR/);
    expect(res.code).toBe(0);
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout) as RawManifest;
    expect(raw.mediaType).toBe(DOCKER.manifest);
    expect(raw.config.mediaType).toBe(DOCKER.config);
    expect(raw.layers.map((l) => l.mediaType)).toEqual([DOCKER.layerGzip, DOCKER.layerGzip]);
    const dir = path.join(env.tmp, 'copied');
    // decompressed by skopeo's own (Go) gzip reader: each layer must come out as its diff ID
    await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-decompress', `docker://${name}`, `dir:${dir}`]);
    const { stdout } = await run('skopeo', ['inspect', `dir:${dir}`]);
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toHaveLength(2);
    const configDigest = (JSON.parse((await run('skopeo', ['inspect', '--raw', `dir:${dir}`])).stdout) as { config: { digest: string } }).config.digest;
    const config = JSON.parse(await fsp.readFile(path.join(dir, configDigest.slice(7)), 'utf8')) as { rootfs: { diff_ids: string[] } };
    const layers = (JSON.parse((await run('skopeo', ['inspect', '--raw', `dir:${dir}`])).stdout) as { layers: Array<{ digest: string }> }).layers;
    expect(layers.map((l) => l.digest)).toEqual(config.rootfs.diff_ids);
  }, 120_000);

  test('type=docker writes Docker types by default and OCI ones when asked; type=oci the reverse', async () => {
    const manifestOf = async (file: string): Promise<RawManifest> => {
      const dir = `${file}.d`;
      await fsp.mkdir(dir);
      await run('tar', ['-xf', file, '-C', dir]);
      const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string }> };
      const manifest = JSON.parse(await fsp.readFile(path.join(dir, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8')) as RawManifest;
      expect(index.manifests[0].mediaType).toBe(manifest.mediaType);
      return manifest;
    };
    const outputs: Array<[string, string]> = [['docker', ''], ['docker', ',oci-mediatypes=true'], ['oci', ''], ['oci', ',oci-mediatypes=false']];
    const types: string[] = [];
    for (const [type, extra] of outputs) {
      const file = path.join(env.tmp, `${type}${extra.replace(/[,=]/g, '-')}.tar`);
      const res = await env.build(ctx, ['--output', `type=${type},dest=${file},name=typed:1${extra}`]);
      expect(res.code).toBe(0);
      types.push((await manifestOf(file)).mediaType);
    }
    expect(types).toEqual([DOCKER.manifest, 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.manifest.v1+json', DOCKER.manifest]);
  }, 120_000);

  test('zstd with oci-mediatypes=false fails before the build, as in BuildKit', async () => {
    const res = await env.build(ctx, ['--output', 'type=oci,dest=/dev/null,compression=zstd,oci-mediatypes=false']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('compression=zstd conflicts with oci-mediatypes=false');
    expect(res.stderr).not.toContain('RUN echo');
  }, 60_000);
});
