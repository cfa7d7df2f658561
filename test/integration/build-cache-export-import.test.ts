import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { makeBusyboxRootfs } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { pushOciImage } from '../helpers/push-oci-image';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { LocalContentStore } from '../../store/content-store';
import { CACHE_CONFIG_MEDIA_TYPE, cacheConfigSchema } from '../../solver/cache-io/cache-config';

const run = promisify(execFile);
jest.setTimeout(300_000);

/**
 * Two daemons, one registry: A builds and exports its cache; B, on an empty root, imports it
 * and rebuilds with every step cached, the same image digest, and only the layers the result
 * needs downloaded.
 */
let tmp: string;
let registry: TestRegistry;
const daemons: TestDaemon[] = [];
let ctx: string;

async function daemon(name: string): Promise<TestDaemon> {
  const d = await startDaemon({ builder: 'real', root: path.join(tmp, name) });
  daemons.push(d);
  return d;
}

async function build(d: TestDaemon, image: string, extra: string[]): Promise<{ res: RunResult; digest: string | undefined }> {
  const md = path.join(tmp, `md-${image.replace(/[^a-z0-9]/g, '-')}.json`);
  const res = await runBuildctl([
    '--addr', d.addr, '--tlsdir', path.join(d.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
    '--output', `type=image,name=${registry.host}/${image},push=true`, '--metadata-file', md, ...extra,
  ]);
  const digest = res.code === 0 ? (JSON.parse(await fsp.readFile(md, 'utf8')) as Record<string, string>)['containerimage.digest'] : undefined;
  return { res, digest };
}

/** The cache config and layer digests the registry holds at `repo:tag`. */
async function cacheAt(repoTag: string): Promise<{ records: Array<{ description?: string; chain: Array<{ layer: number }> }>; layers: string[] }> {
  const [repo, tag] = repoTag.split(':');
  const res = await fetch(`http://${registry.host}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  expect(res.status).toBe(200);
  const manifest = (await res.json()) as { config: { mediaType: string; digest: string }; layers: Array<{ digest: string }> };
  expect(manifest.config.mediaType).toBe(CACHE_CONFIG_MEDIA_TYPE);
  const config = cacheConfigSchema.parse(await (await fetch(`http://${registry.host}/v2/${repo}/blobs/${manifest.config.digest}`)).json());
  return { records: config.records, layers: manifest.layers.map((l) => l.digest) };
}

/** The blob of the last layer of the record whose description matches. */
function topLayerOf(cache: { records: Array<{ description?: string; chain: Array<{ layer: number }> }>; layers: string[] }, step: RegExp): string {
  const record = cache.records.find((r) => step.test(r.description ?? ''));
  if (record === undefined) throw new Error(`no record for ${step}`);
  return cache.layers[record.chain[record.chain.length - 1].layer];
}

function stepLines(res: RunResult): string[] {
  return res.stderr.split('\n').filter((l) => /^#\d+ \[/.test(l) && !l.includes('[internal]'));
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cache-io-'));
  registry = await startRegistry();
  const rootfs = path.join(tmp, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  const layer = path.join(tmp, 'layer.tar.gz');
  await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-czf', layer, '.']);
  await pushOciImage(registry.host, 'library/base', '1', [layer], { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] });
  ctx = await writeContext(path.join(tmp, 'ctx'), {
    'app.txt': 'app\n',
    Dockerfile: [
      `FROM ${registry.host}/library/base:1 AS build`,
      'RUN head -c 300000 /dev/urandom > /big && echo built > /out',
      `FROM ${registry.host}/library/base:1`,
      'COPY app.txt /app.txt',
      'COPY --from=build /out /out',
      'RUN cat /out /app.txt > /final',
      '',
    ].join('\n'),
  });
});

afterAll(async () => {
  for (const d of daemons) await d.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('mode=max: a second daemon with an empty root rebuilds all CACHED, to the same digest, downloading only what the image needs', async () => {
  const a = await daemon('a');
  const first = await build(a, 'app:a', ['--export-cache', `type=registry,ref=${registry.host}/cache/app:max,mode=max`]);
  expect(first.res.stderr).not.toMatch(/ERROR/);
  expect(first.res.code).toBe(0);
  expect(first.res.stderr).toMatch(/exporting cache to registry/);
  const cache = await cacheAt('cache/app:max');
  // every step of both stages, the build stage's RUN too
  const big = topLayerOf(cache, /head -c 300000/);

  const b = await daemon('b');
  const second = await build(b, 'app:b', ['--import-cache', `type=registry,ref=${registry.host}/cache/app:max`]);
  expect(second.res.stderr).not.toMatch(/ERROR|WARN/);
  expect(second.res.code).toBe(0);
  expect(second.digest).toBe(first.digest);
  const steps = stepLines(second.res);
  expect(steps.length).toBeGreaterThanOrEqual(4);
  for (const line of steps) {
    const n = line.split(' ')[0];
    expect(second.res.stderr).toMatch(new RegExp(`^${n} CACHED$`, 'm'));
  }
  // the build stage's RUN is under a hit (the COPY --from): its 300 kB layer never came
  const content = await LocalContentStore.open(path.join(b.root as string, 'content'));
  expect(await content.info(big)).toBeUndefined();
  expect(await content.info(topLayerOf(cache, /RUN cat/))).toBeDefined();

  // B imports and exports the same ref, as a CI loop does: the record it never loaded stays,
  // and its blob is still not downloaded (the repository has it)
  const again = await build(b, 'app:b', ['--import-cache', `type=registry,ref=${registry.host}/cache/app:max`, '--export-cache', `type=registry,ref=${registry.host}/cache/app:max,mode=max`]);
  expect(again.res.code).toBe(0);
  expect(topLayerOf(await cacheAt('cache/app:max'), /head -c 300000/)).toBe(big);
  expect(await content.info(big)).toBeUndefined();
  // to another repository, the blob has to come along
  const moved = await build(b, 'app:b', ['--import-cache', `type=registry,ref=${registry.host}/cache/app:max`, '--export-cache', `type=registry,ref=${registry.host}/cache/other:max,mode=max`]);
  expect(moved.res.code).toBe(0);
  expect(topLayerOf(await cacheAt('cache/other:max'), /head -c 300000/)).toBe(big);
  expect((await fetch(`http://${registry.host}/v2/cache/other/blobs/${big}`, { method: 'HEAD' })).status).toBe(200);

  // what was loaded is in B's own cache now: a third build needs no import
  const third = await build(b, 'app:b2', []);
  expect(third.res.code).toBe(0);
  expect(third.digest).toBe(first.digest);
  expect(third.res.stderr).toMatch(/RUN cat \/out \/app.txt > \/final\n#\d+ CACHED/);
});

test('mode=min exports the final stage only; an importer still hits the last step, and a changed file reruns from the COPY on', async () => {
  const a = await daemon('min-a');
  const first = await build(a, 'app:min', ['--export-cache', `type=registry,ref=${registry.host}/cache/app:min`]);
  expect(first.res.code).toBe(0);
  const cache = await cacheAt('cache/app:min');
  expect(cache.records.some((r) => /head -c/.test(r.description ?? ''))).toBe(false);
  expect(cache.records.some((r) => /RUN cat/.test(r.description ?? ''))).toBe(true);

  const b = await daemon('min-b');
  const second = await build(b, 'app:min-b', ['--import-cache', `type=registry,ref=${registry.host}/cache/app:min`]);
  expect(second.res.code).toBe(0);
  expect(second.digest).toBe(first.digest);
  expect(second.res.stderr).not.toMatch(/head -c 300000/);

  // another daemon, a changed file: the COPY and what follows run, the build stage runs for the COPY --from
  const changed = await writeContext(path.join(tmp, 'ctx-changed'), { 'app.txt': 'changed\n', Dockerfile: await fsp.readFile(path.join(ctx, 'Dockerfile'), 'utf8') });
  const c = await daemon('min-c');
  const res = await runBuildctl([
    '--addr', c.addr, '--tlsdir', path.join(c.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${changed}`, '--local', `dockerfile=${changed}`, '--progress', 'plain',
    '--import-cache', `${registry.host}/cache/app:min`,
  ]);
  expect(res.code).toBe(0);
  expect(res.stderr).toMatch(/COPY app.txt \/app.txt\n(?!#\d+ CACHED)/);
});

test('type=inline: the pushed image carries its cache; a daemon with an empty root imports it by the image ref', async () => {
  const a = await daemon('inline-a');
  const first = await build(a, 'app:inline', ['--export-cache', 'type=inline']);
  expect(first.res.code).toBe(0);
  const b = await daemon('inline-b');
  const second = await build(b, 'app:inline-b', ['--export-cache', 'type=inline', '--import-cache', `type=registry,ref=${registry.host}/app:inline`]);
  expect(second.res.stderr).not.toMatch(/WARN/);
  expect(second.res.code).toBe(0);
  expect(second.digest).toBe(first.digest);
  expect(second.res.stderr).toMatch(/RUN cat \/out \/app.txt > \/final\n#\d+ CACHED/);
  expect(second.res.stderr).not.toMatch(/head -c 300000/);

  // the frontend's way, as docker build --cache-from and buildx --cache-to type=inline pass it
  const c = await daemon('inline-c');
  const third = await build(c, 'app:inline-c', ['--opt', 'build-arg:BUILDKIT_INLINE_CACHE=1', '--opt', `cache-from=${registry.host}/app:inline`]);
  expect(third.res.stderr).not.toMatch(/WARN/);
  expect(third.res.code).toBe(0);
  expect(third.digest).toBe(first.digest);
});

test('type=local: the cache goes to a directory on the client (an OCI layout) and a daemon with an empty root imports it from there', async () => {
  const dir = path.join(tmp, 'local-cache');
  const a = await daemon('local-a');
  const first = await build(a, 'app:local-a', ['--export-cache', `type=local,dest=${dir},mode=max`]);
  expect(first.res.stderr).not.toMatch(/ERROR|WARN/);
  expect(first.res.code).toBe(0);
  const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  expect(index.manifests).toHaveLength(1);
  expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('latest');
  const manifest = JSON.parse(await fsp.readFile(path.join(dir, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8')) as { config: { mediaType: string }; layers: Array<{ digest: string }> };
  expect(manifest.config.mediaType).toBe(CACHE_CONFIG_MEDIA_TYPE);
  for (const l of manifest.layers) await fsp.access(path.join(dir, 'blobs', 'sha256', l.digest.slice(7)));

  const b = await daemon('local-b');
  const second = await build(b, 'app:local-b', ['--import-cache', `type=local,src=${dir}`]);
  expect(second.res.stderr).not.toMatch(/ERROR|WARN/);
  expect(second.res.code).toBe(0);
  expect(second.digest).toBe(first.digest);
  expect(second.res.stderr).toMatch(/RUN cat \/out \/app.txt > \/final\n#\d+ CACHED/);
  // under the COPY --from hit: shown cached, neither run nor read from the directory
  expect(second.res.stderr).toMatch(/RUN head -c 300000 [^\n]*\n#\d+ CACHED/);
  const config = cacheConfigSchema.parse(JSON.parse(await fsp.readFile(path.join(dir, 'blobs', 'sha256', (manifest as unknown as { config: { digest: string } }).config.digest.slice(7)), 'utf8')));
  const big = topLayerOf({ records: config.records, layers: manifest.layers.map((l) => l.digest) }, /head -c 300000/);
  expect(await (await LocalContentStore.open(path.join(b.root as string, 'content'))).info(big)).toBeUndefined();

  // b exports what it imported back to the same directory: blobs the directory has are neither
  // downloaded from it nor sent to it again (b still lacks the big layer), and the index holds
  const back = await build(b, 'app:local-b', ['--import-cache', `type=local,src=${dir}`, '--export-cache', `type=local,dest=${dir},mode=max`]);
  expect(back.res.stderr).not.toMatch(/ERROR|WARN/);
  expect(back.res.code).toBe(0);
  expect(await (await LocalContentStore.open(path.join(b.root as string, 'content'))).info(big)).toBeUndefined();
  const after = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  expect(after.manifests).toHaveLength(1);
  const exported = JSON.parse(await fsp.readFile(path.join(dir, 'blobs', 'sha256', (after.manifests[0] as { digest: string }).digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
  expect(exported.layers.map((l) => l.digest)).toContain(big);
  for (const l of exported.layers) await fsp.access(path.join(dir, 'blobs', 'sha256', l.digest.slice(7)));

  // several imports: the first has nothing, the second has it all
  const c = await daemon('local-c');
  const both = await build(c, 'app:local-c', ['--import-cache', `type=registry,ref=${registry.host}/cache/none:2`, '--import-cache', `type=local,src=${dir}`]);
  expect(both.res.code).toBe(0);
  expect(both.digest).toBe(first.digest);
  expect(both.res.stderr).toMatch(/RUN cat \/out \/app.txt > \/final\n#\d+ CACHED/);

  // a tag that the directory does not hold is a warning; a missing src is refused by buildctl
  const none = await build(b, 'app:local-none', ['--import-cache', `type=local,src=${dir},tag=other`]);
  expect(none.res.code).toBe(0);
  expect(none.res.stderr).toMatch(/not found; the build runs without it/);
  const noSrc = await build(b, 'app:local-nosrc', ['--import-cache', 'type=local']);
  expect(noSrc.res.code).not.toBe(0);
  expect(noSrc.res.stderr).toMatch(/src=DIR is missing/);
});

test('an import that does not exist yet is a warning and the build runs; a bad type or a missing ref fails before anything runs', async () => {
  const d = daemons[0];
  const missing = await build(d, 'app:missing', ['--import-cache', `type=registry,ref=${registry.host}/cache/none:1`]);
  expect(missing.res.code).toBe(0);
  expect(missing.res.stderr).toMatch(/cache\/none:1: not found; the build runs without it/);

  const gha = await build(d, 'app:gha', ['--export-cache', 'type=gha']);
  expect(gha.res.code).not.toBe(0);
  expect(gha.res.stderr).toMatch(/Cannot export cache type=gha: buildd exports type=registry, type=local and type=inline/);

  const noRef = await build(d, 'app:noref', ['--export-cache', 'type=registry,mode=max']);
  expect(noRef.res.code).not.toBe(0);
  expect(noRef.res.stderr).toMatch(/ref=REPOSITORY\[:TAG\] is missing/);
});

test('an image that is no cache is refused by name, and the build still runs', async () => {
  const d = daemons[0];
  const res = await build(d, 'app:not-cache', ['--import-cache', `type=registry,ref=${registry.host}/library/base:1`]);
  expect(res.res.code).toBe(0);
  expect(res.res.stderr).toMatch(/library\/base:1: Cannot import cache .*: the image has no inline cache/);
});
