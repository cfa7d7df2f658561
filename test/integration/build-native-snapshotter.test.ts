import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { flattenImage } from '../conformance/harness/flatten-image';
import { compareImages, formatDifference } from '../conformance/harness/image-compare';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { runBuildctl, runBuildd, startDaemon, type RunResult, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { createRootlessUser, startRootlessDaemon, type RootlessUser } from '../helpers/rootless-daemon';
import { cleanupRoot, mountsUnder } from '../helpers/store-mounts';

jest.setTimeout(300_000);

const run = promisify(execFile);

interface FileRow {
  uid?: number;
  gid?: number;
}

async function flatten(archive: string): Promise<Record<string, FileRow>> {
  return (await flattenImage(archive)).files;
}

/** The conformance harness's comparison of two image archives: no lines when they hold the same files, config and history. */
async function imgdiff(a: string, b: string): Promise<string[]> {
  return (await compareImages(a, b)).map(formatDifference);
}

const build = (daemon: TestDaemon, ctx: string, out: string): Promise<RunResult> =>
  runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--progress', 'plain',
    '--output', `type=oci,dest=${out}`,
  ]);

/**
 * `--oci-worker-snapshotter native`, the copying snapshotter: a root daemon and a rootless one
 * build, file by file, the image an overlayfs daemon builds (a RUN's chown, a whiteout of a
 * base file, an opaque directory, COPY). `auto` on a root where overlay refuses its upper dir
 * (an overlay mount, as in a container) falls back to native, saying why, and builds; the
 * root then remembers it was made by native.
 */
describe('buildd --oci-worker-snapshotter native', () => {
  let tmp: string;
  let registry: TestRegistry;
  let busybox: string;
  let user: RootlessUser | undefined;
  const daemons: TestDaemon[] = [];
  let overlayRoot: string | undefined;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-native-build-'));
    await fsp.chmod(tmp, 0o755);
    registry = await startRegistry();
    ({ ref: busybox } = await pushBusyboxImage(registry.host));
  });

  afterAll(async () => {
    const codes = await Promise.all(daemons.map((d) => d.stop().catch((err: Error) => err.message)));
    await registry?.stop().catch(() => undefined);
    const removed = await user?.remove().then(
      () => 'removed',
      (err: Error) => err.message,
    );
    if (overlayRoot) await run('umount', [overlayRoot]).catch(() => undefined);
    const left = tmp ? await mountsUnder(tmp) : [];
    if (tmp) await cleanupRoot(tmp);
    expect({ codes, removed, left }).toEqual({ codes: daemons.map(() => 0), removed: user ? 'removed' : undefined, left: [] });
  });

  const dockerfile = (base: string): string =>
    [
      `FROM ${base}`,
      'COPY hello.txt /hello.txt',
      'COPY --chown=7:8 hello.txt /srv/owned-copy.txt',
      // a read-only view of a committed snapshot
      `COPY --from=${base} /etc/passwd /from-image/passwd`,
      'RUN echo made > /made && chown 4242:4343 /made && mkdir /d && chown 4242:4343 /d',
      // a whiteout of a base file, an opaque /var (its tmp from the base must stay gone)
      'RUN rm /etc/group && rm -rf /var && mkdir /var && echo new > /var/fresh',
      'USER 4242:4343',
      'RUN echo mine > /d/by-4242',
    ].join('\n');

  it('builds as root and rootless the same image as an overlayfs daemon', async () => {
    const ctx = await writeContext(path.join(tmp, 'ctx'), { Dockerfile: dockerfile(busybox), 'hello.txt': 'hello from the context\n' });
    const overlay = await startDaemon({ builder: 'real', root: path.join(tmp, 'root-overlay'), extraArgs: ['--oci-worker-snapshotter', 'overlayfs'] });
    daemons.push(overlay);
    const native = await startDaemon({ builder: 'real', root: path.join(tmp, 'root-native'), extraArgs: ['--oci-worker-snapshotter', 'native'] });
    daemons.push(native);
    expect(overlay.stderr()).toContain('snapshotter: overlayfs');
    expect(native.stderr()).toContain('snapshotter: native');

    const outs = { overlay: path.join(tmp, 'overlay.tar'), native: path.join(tmp, 'native.tar'), rootless: path.join(tmp, 'rootless.tar') };
    const [a, b] = await Promise.all([build(overlay, ctx, outs.overlay), build(native, ctx, outs.native)]);
    expect({ code: a.code, stderr: a.code === 0 ? '' : a.stderr }).toEqual({ code: 0, stderr: '' });
    expect({ code: b.code, stderr: b.code === 0 ? '' : `${b.stderr}\n${native.stderr()}` }).toEqual({ code: 0, stderr: '' });
    const files = await flatten(outs.native);
    expect(files['made']).toMatchObject({ uid: 4242, gid: 4343 });
    expect(files['srv/owned-copy.txt']).toMatchObject({ uid: 7, gid: 8 });
    expect(files['var/fresh']).toBeDefined();
    expect(files['var/tmp']).toBeUndefined();
    expect(files['etc/group']).toBeUndefined();
    expect(files['etc/passwd']).toBeDefined();
    expect(files['from-image/passwd']).toBeDefined();
    expect(await imgdiff(outs.native, outs.overlay)).toEqual([]);
    // the snapshots are plain directories: nothing of a build stays mounted
    expect(await mountsUnder(native.root)).toEqual([]);

    user = await createRootlessUser(path.join(tmp, 'home'));
    const rootless = await startRootlessDaemon(user, { extraArgs: ['--oci-worker-snapshotter', 'native'] });
    daemons.push(rootless);
    expect(rootless.stderr()).toContain('snapshotter: native');
    const c = await build(rootless, ctx, outs.rootless);
    expect({ code: c.code, stderr: c.code === 0 ? '' : `${c.stderr}\n${rootless.stderr()}` }).toEqual({ code: 0, stderr: '' });
    expect(await imgdiff(outs.rootless, outs.overlay)).toEqual([]);
    // rootlesskit's mount namespace lets buildd bind-mount its views read-only
    expect(rootless.stderr()).not.toContain('read-only views are the committed directories themselves');
  });

  it('auto falls back to native where overlay refuses the root as upper dir, logs why, builds, and keeps that choice for the root', async () => {
    // a daemon root inside an overlay mount, as in a container: the kernel refuses overlayfs as an upper dir
    overlayRoot = path.join(tmp, 'ovl', 'merged');
    for (const d of ['lower', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(tmp, 'ovl', d), { recursive: true });
    const o = path.join(tmp, 'ovl');
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${o}/lower,upperdir=${o}/upper,workdir=${o}/work`, overlayRoot]);
    const root = path.join(overlayRoot, 'root');
    const daemon = await startDaemon({ builder: 'real', root });
    daemons.push(daemon);
    expect(daemon.stderr()).toMatch(
      new RegExp(`snapshotter: native \\(copies each layer\\), as overlayfs is not usable here: Cannot use overlayfs under ${root}/tmp: a test mount was refused \\([^;]+\\); ${root}/tmp is on overlay, which overlayfs does not take as an upper dir"`),
    );
    // overlay refuses a whiteout (a 0:0 device) made in it: this build deletes nothing
    const ctx = await writeContext(path.join(tmp, 'ctx-auto'), {
      Dockerfile: [`FROM ${busybox}`, 'COPY hello.txt /hello.txt', 'RUN echo made > /made && chown 4242:4343 /made'].join('\n'),
      'hello.txt': 'hi\n',
    });
    const out = path.join(tmp, 'auto.tar');
    const res = await build(daemon, ctx, out);
    expect({ code: res.code, stderr: res.code === 0 ? '' : `${res.stderr}\n${daemon.stderr()}` }).toEqual({ code: 0, stderr: '' });
    expect((await flatten(out))['made']).toMatchObject({ uid: 4242, gid: 4343 });
    expect(await daemon.stop()).toBe(0);
    daemons.splice(daemons.indexOf(daemon), 1);

    const again = await runBuildd(['--addr', 'tcp://127.0.0.1:0', '--insecure-tcp', '--root', root, '--oci-worker-snapshotter', 'overlayfs']);
    expect({ code: again.code, stderr: again.stderr }).toEqual({
      code: 1,
      stderr: expect.stringContaining(`Cannot open ${root} with the overlayfs snapshotter: it was made with the native snapshotter (its snapshots are kept differently); start with --oci-worker-snapshotter native (or auto), or use another --root`),
    });
    // overlayfs asked for by name on a fresh root there: the start fails, saying why
    const fresh = path.join(overlayRoot, 'fresh');
    const forced = await runBuildd(['--addr', 'tcp://127.0.0.1:0', '--insecure-tcp', '--root', fresh, '--oci-worker-snapshotter', 'overlayfs']);
    expect({ code: forced.code, stderr: forced.stderr }).toEqual({
      code: 1,
      // what mount(8) says in the brackets depends on its version
      stderr: expect.stringMatching(
        new RegExp(`buildd: Cannot use overlayfs under ${fresh}/tmp: a test mount was refused \\([^;]+\\); ${fresh}/tmp is on overlay, which overlayfs does not take as an upper dir; --oci-worker-snapshotter native \\(or auto\\) copies layers instead\n`),
      ),
    });
    await expect(fsp.access(path.join(fresh, 'snapshotter.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
