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

const run = promisify(execFile);
jest.setTimeout(180_000);

/**
 * A step that runs although its last build was cached says why in the plain progress
 * (`#N cache miss: ...`): a changed file of the context, a changed build arg, a changed base.
 */
let tmp: string;
let registry: TestRegistry;
let daemon: TestDaemon;
let layer: string;
let ctx: string;

async function pushBase(env: string[]): Promise<void> {
  await pushOciImage(registry.host, 'library/base', '1', [layer], { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...env], Cmd: ['sh'] });
}

function build(version: string): Promise<RunResult> {
  return runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
    '--opt', `build-arg:VERSION=${version}`,
  ]);
}

/** The `cache miss:` line of the step whose header line matches `step`. */
function missOf(res: RunResult, step: RegExp): string | undefined {
  const header = res.stderr.split('\n').find((l) => /^#\d+ /.test(l) && step.test(l));
  const n = header?.split(' ')[0];
  return res.stderr.split('\n').find((l) => n !== undefined && l.startsWith(`${n} cache miss: `))?.slice(`${n} cache miss: `.length);
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cache-miss-'));
  registry = await startRegistry();
  const rootfs = path.join(tmp, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  layer = path.join(tmp, 'layer.tar.gz');
  await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-czf', layer, '.']);
  await pushBase([]);
  ctx = await writeContext(path.join(tmp, 'ctx'), {
    'src/a.txt': 'a\n',
    'src/b.txt': 'b\n',
    Dockerfile: `FROM ${registry.host}/library/base:1\nARG VERSION\nRUN echo "$VERSION" > /version\nCOPY src /src\n`,
  });
  daemon = await startDaemon({ builder: 'real', root: path.join(tmp, 'root') });
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test('a changed file, build arg and base are each named', async () => {
  const first = await build('1');
  expect(first.code).toBe(0);
  expect(first.stderr).not.toContain('cache miss');

  await fsp.writeFile(path.join(ctx, 'src', 'b.txt'), 'b changed\n');
  const file = await build('1');
  expect(file.code).toBe(0);
  expect(missOf(file, /COPY src \/src/)).toBe('the content of src changed');
  expect(file.stderr).toMatch(/RUN echo "1" > \/version\n#\d+ CACHED/);

  const arg = await build('2');
  expect(arg.code).toBe(0);
  expect(missOf(arg, /RUN echo/)).toBe('build arg or env VERSION changed');
  // the COPY reads a step whose name changed with the arg: compared with nothing, it says nothing
  expect(missOf(arg, /COPY src/)).toBeUndefined();

  await pushBase(['EXTRA=1']);
  const based = await build('2');
  expect(based.code).toBe(0);
  expect(missOf(based, /RUN echo/)).toContain(`its input [1/3] FROM ${registry.host}/library/base:1 changed`);
});
