import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { flattenImage } from '../conformance/harness/flatten-image';
import { makeBusyboxRootfs } from '../helpers/busybox-image';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';
import { pushOciImage } from '../helpers/push-oci-image';
import { startRegistry, type TestRegistry } from '../helpers/registry';

jest.setTimeout(600_000);

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');

/**
 * The repository's Dockerfile (buildd's own image) built by buildd from this checkout. Its
 * BASE is made here from this machine's node, npm and busybox, since a test fetches nothing from
 * a package registry (deploy/image/base.Dockerfile makes the real one). The build's own RUN
 * runs `buildd --version` from the image; the image runs buildd rootless as uid 1000 and carries
 * the runtime dependencies but not the dev ones.
 */
let tmp: string;
let registry: TestRegistry;
let daemon: TestDaemon;

/** This machine's node (with the libraries it links) and npm, over a busybox root. */
async function nodeBaseRootfs(root: string): Promise<void> {
  await makeBusyboxRootfs(root);
  const node = (await run('sh', ['-c', 'readlink -f "$(command -v node)"'])).stdout.trim();
  const { stdout: ldd } = await run('ldd', [node]);
  const libs = [...ldd.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1] as string);
  for (const file of [node, ...libs]) {
    const dest = path.join(root, file === node ? 'usr/local/bin/node' : file);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    await fsp.copyFile(await fsp.realpath(file), dest);
    await fsp.chmod(dest, 0o755);
  }
  const npmCli = (await run('sh', ['-c', 'readlink -f "$(command -v npm)"'])).stdout.trim();
  const npmDir = path.dirname(path.dirname(npmCli));
  await fsp.cp(npmDir, path.join(root, 'usr/local/lib/node_modules/npm'), { recursive: true });
  await fsp.symlink('../lib/node_modules/npm/bin/npm-cli.js', path.join(root, 'usr/local/bin/npm'));
  // the shebang of buildd's and npm's scripts
  await fsp.symlink('/bin/busybox', path.join(root, 'usr/bin/env'));
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-image-'));
  registry = await startRegistry();
  daemon = await startDaemon({ builder: 'real' });
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test("buildd builds its own image from the repository's Dockerfile, and the image's buildd runs", async () => {
  const rootfs = path.join(tmp, 'base');
  await nodeBaseRootfs(rootfs);
  const layer = path.join(tmp, 'base.tar.gz');
  await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-czf', layer, '.']);
  const base = await pushOciImage(registry.host, 'buildd-base', 'test', [layer]);

  const dest = path.join(tmp, 'buildd.oci.tar');
  const res = await runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${REPO}`, '--local', `dockerfile=${REPO}`, '--progress', 'plain',
    '--opt', `build-arg:BASE=${base.ref}`, '--output', `type=oci,dest=${dest},compression=uncompressed`,
  ]);
  expect(res.stderr).toMatch(/buildd --version/);
  expect(res.code).toBe(0);

  const image = await flattenImage(dest);
  expect(image.config['Entrypoint']).toEqual(['buildd']);
  expect(image.config['User']).toBe('1000:1000');
  expect(image.config['Cmd']).toEqual(['--rootless', '--addr', 'unix:///run/user/1000/buildd/buildd.sock']);
  const files = Object.keys(image.files);
  for (const f of ['opt/buildd/dist/buildd/main.js', 'opt/buildd/buildd/api/buildd.proto', 'opt/buildd/node_modules/@grpc/grpc-js/package.json', 'opt/buildd/node_modules/better-sqlite3/package.json', 'usr/local/bin/buildd', 'usr/local/bin/buildctl', 'etc/subuid']) {
    expect(files).toContain(f);
  }
  // dev dependencies were pruned, and the tests never reach the image
  expect(files.some((f) => f.startsWith('opt/buildd/node_modules/typescript/'))).toBe(false);
  expect(files.some((f) => f.startsWith('opt/buildd/node_modules/jest/'))).toBe(false);
  expect(files.some((f) => f.startsWith('opt/buildd/test/'))).toBe(false);
  expect(image.files['home/user/.local/share/buildd']).toMatchObject({ uid: 1000, gid: 1000 });
});
