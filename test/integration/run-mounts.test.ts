import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { flattenImage } from '../conformance/harness/flatten-image';
import { writeContext } from '../helpers/build-env';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { RunResult, runBuildctl, startDaemon, TestDaemon } from '../helpers/daemon';
import { startRegistry, TestRegistry } from '../helpers/registry';
import { cleanupRoot, mountsUnder } from '../helpers/store-mounts';
import { waitFor } from '../helpers/wait-for';

type FileEntry = { type: string; mode: string; uid: number; gid: number; sha256?: string };

/** The files of an image as the conformance harness flattens them. */
async function flatten(archive: string): Promise<Record<string, FileEntry>> {
  return (await flattenImage(archive)).files;
}

function sha256(text: string): string {
  return require('node:crypto').createHash('sha256').update(text).digest('hex') as string;
}

/** Whether the step whose progress name contains `text` ran (DONE) or was a cache hit (CACHED). */
function stepStatus(progress: string, text: string): string | undefined {
  const id = progress.split('\n').find((l) => /^#\d+ \[/.test(l) && l.includes(text))?.split(' ')[0];
  if (id === undefined) return undefined;
  return progress.split('\n').find((l) => l === `${id} CACHED` || l.startsWith(`${id} DONE`))?.split(' ')[1];
}

/** The daemon's JSON log lines (it runs with --debug). */
function daemonLog(daemon: TestDaemon): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of daemon.stderr().split('\n')) {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return lines;
}

describe('RUN --mount=type=cache, bind and tmpfs with the real daemon, runc and registry', () => {
  let tmp: string;
  let root: string;
  let registry: TestRegistry;
  let busybox: string;
  let daemon: TestDaemon;
  let n = 0;

  const start = async (): Promise<void> => {
    daemon = await startDaemon({ builder: 'real', root, extraArgs: ['--debug'] });
  };
  const build = (context: string, extra: string[] = []): Promise<RunResult> => runBuildctl([
    '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${context}`, '--local', `dockerfile=${context}`, '--progress', 'plain', ...extra,
  ]);
  /** Builds `files` as a context into an OCI archive and flattens the image. */
  async function buildFiles(files: Parameters<typeof writeContext>[1], extra: string[] = []): Promise<{ res: RunResult; files: Record<string, FileEntry>; dir: string }> {
    const dir = await writeContext(path.join(tmp, `ctx-${++n}`), files);
    const out = path.join(tmp, `image-${n}.tar`);
    const res = await build(dir, [...extra, '--output', `type=oci,dest=${out}`]);
    if (res.code !== 0) return { res, files: {}, dir };
    return { res, files: await flatten(out), dir };
  }
  /** A file's content in a flattened image, by its sha256. */
  const hasContent = (entry: FileEntry | undefined, content: string): boolean => entry?.sha256 === sha256(content);

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-run-mounts-'));
    root = path.join(tmp, 'root');
    registry = await startRegistry();
    busybox = (await pushBusyboxImage(registry.host)).ref;
    await start();
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await registry?.stop();
    if (root) await cleanupRoot(root);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('a cache mount keeps its content between builds and across a daemon restart, and is absent from the image', async () => {
    const dockerfile = `FROM ${busybox}\nARG STAMP\nRUN --mount=type=cache,id=keep,target=/var/cache/k echo "$STAMP" >> /var/cache/k/log && cat /var/cache/k/log > /seen\n`;
    const first = await buildFiles({ Dockerfile: dockerfile }, ['--opt', 'build-arg:STAMP=one']);
    expect(first.res.code).toBe(0);
    expect(hasContent(first.files['seen'], 'one\n')).toBe(true);
    const second = await buildFiles({ Dockerfile: dockerfile }, ['--opt', 'build-arg:STAMP=two']);
    expect(hasContent(second.files['seen'], 'one\ntwo\n')).toBe(true);
    await daemon.stop();
    await start();
    const third = await buildFiles({ Dockerfile: dockerfile }, ['--opt', 'build-arg:STAMP=three']);
    expect(third.res.code).toBe(0);
    expect(hasContent(third.files['seen'], 'one\ntwo\nthree\n')).toBe(true);
    // the target is left as the reference leaves it: an empty directory owned by root, nothing of the cache in it
    expect(third.files['var/cache/k']).toMatchObject({ type: 'dir', mode: '0o755', uid: 0, gid: 0 });
    expect(Object.keys(third.files).filter((f) => f.startsWith('var/cache/k/'))).toEqual([]);
    // the cache lives under the daemon's root, not under its tmp
    const dirs = await fsp.readdir(path.join(root, 'cache-mounts'));
    const logs = await Promise.all(dirs.map((d) => fsp.readFile(path.join(root, 'cache-mounts', d, '0', 'log'), 'utf8').catch(() => undefined)));
    expect(logs).toContain('one\ntwo\nthree\n');
  }, 240_000);

  test('sharing=locked: two concurrent builds take turns (each step fails if it finds the other one inside)', async () => {
    // Each step marks itself inside with a lock file, fails if the other's mark is there, and
    // blocks on a FIFO in the cache until the test writes to it: the test lets the first one
    // go only after the daemon said the second one waits for the lock.
    const step = (gate: string): string => `FROM ${busybox}\nRUN --mount=type=cache,id=turns,target=/c,sharing=locked ` +
      `if [ -e /c/lock ]; then echo "found $(cat /c/lock) inside" >&2; exit 3; fi; echo ${gate} > /c/lock; mkfifo /c/gate-${gate}; cat /c/gate-${gate}; rm /c/lock /c/gate-${gate}\n`;
    const ctxA = await writeContext(path.join(tmp, 'locked-a'), { Dockerfile: step('a') });
    const ctxB = await writeContext(path.join(tmp, 'locked-b'), { Dockerfile: step('b') });
    const builds = [build(ctxA), build(ctxB)];
    const gateOf = async (name: string): Promise<string | undefined> => {
      for (const d of await fsp.readdir(path.join(root, 'cache-mounts')).catch(() => [] as string[])) {
        const p = path.join(root, 'cache-mounts', d, '0', `gate-${name}`);
        if (await fsp.lstat(p).then(() => true, () => false)) return p;
      }
      return undefined;
    };
    const first = await waitFor('a step to block on its gate', async () => {
      for (const name of ['a', 'b']) {
        const p = await gateOf(name);
        if (p) return { name, p };
      }
      return undefined;
    }, 120_000);
    const other = first.name === 'a' ? 'b' : 'a';
    await waitFor('the other step to wait for the locked cache', async () =>
      daemonLog(daemon).some((l) => l['msg'] === 'a step waits for a locked cache mount' && l['id'] === 'turns') ? true : undefined, 60_000);
    expect(await gateOf(other)).toBeUndefined();
    await fsp.writeFile(first.p, 'go\n');
    const second = await waitFor('the other step to block on its gate', () => gateOf(other), 60_000);
    await fsp.writeFile(second, 'go\n');
    const results = await Promise.all(builds);
    for (const r of results) expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  }, 240_000);

  test('bind mounts: the context (read-only), a subpath, a stage, rw writes thrown away; the bind content is part of the cache key', async () => {
    const dockerfile = [
      `FROM ${busybox} AS src`,
      'RUN mkdir -p /data && echo staged > /data/file && ln -s /data/file /data/abs',
      `FROM ${busybox}`,
      'RUN --mount=type=bind,target=/ctx cat /ctx/in.txt > /from-context && ! touch /ctx/x 2>/dev/null',
      'RUN --mount=type=bind,source=sub,target=/sub cat /sub/s.txt > /from-sub',
      'RUN --mount=from=src,source=/data/abs,target=/one.txt cat /one.txt > /from-stage',
      'RUN --mount=type=bind,target=/ctx,rw echo w > /ctx/written && echo changed > /ctx/in.txt && cat /ctx/in.txt > /rw-saw',
      'RUN --mount=type=bind,target=/ctx test ! -e /ctx/written && cat /ctx/in.txt > /after-rw',
      'RUN --mount=from=src,source=/data,target=/d,rw echo w > /d/new && rm /d/file',
      'RUN --mount=from=src,source=/data,target=/d test ! -e /d/new && cat /d/file > /stage-after-rw',
      '',
    ].join('\n');
    const files = { Dockerfile: dockerfile, 'in.txt': 'original\n', 'sub/s.txt': 'sub\n' };
    const first = await buildFiles(files);
    expect(first.res.stderr).toBe(first.res.code === 0 ? first.res.stderr : '');
    expect(first.res.code).toBe(0);
    const f = first.files;
    expect(hasContent(f['from-context'], 'original\n')).toBe(true);
    expect(hasContent(f['from-sub'], 'sub\n')).toBe(true);
    expect(hasContent(f['from-stage'], 'staged\n')).toBe(true);
    expect(hasContent(f['rw-saw'], 'changed\n')).toBe(true);
    expect(hasContent(f['after-rw'], 'original\n')).toBe(true);
    expect(hasContent(f['stage-after-rw'], 'staged\n')).toBe(true);
    for (const dir of ['ctx', 'sub', 'd']) expect(f[dir]).toMatchObject({ type: 'dir', mode: '0o755', uid: 0, gid: 0 });
    expect(Object.keys(f).filter((p) => /^(ctx|sub|d)\//.test(p))).toEqual([]);
    // a file bind's target is runc's stub, which the reference does not leave either
    expect(f['one.txt']).toBeUndefined();
    // the client's context is untouched
    expect(await fsp.readFile(path.join(first.dir, 'in.txt'), 'utf8')).toBe('original\n');
    expect(await fsp.readdir(first.dir)).not.toContain('written');

    // same Dockerfile, a changed file under the bind: the steps that bind it run again
    const changed = await buildFiles({ ...files, 'in.txt': 'second\n' });
    expect(hasContent(changed.files['from-context'], 'second\n')).toBe(true);
    expect(hasContent(changed.files['from-sub'], 'sub\n')).toBe(true);
    expect(stepStatus(changed.res.stderr, 'RUN --mount=type=bind,target=/ctx cat')).toBe('DONE');
    // and the same content again: the step is a cache hit
    const again = await buildFiles({ ...files, 'in.txt': 'second\n' });
    expect(stepStatus(again.res.stderr, 'RUN --mount=type=bind,target=/ctx cat')).toBe('CACHED');
  }, 240_000);

  test('a bind source that is not in its input fails the step with its path', async () => {
    // from the context it fails computing the step's key, as BuildKit's checksum does
    const fromContext = await buildFiles({ Dockerfile: `FROM ${busybox}\nRUN --mount=type=bind,source=missing,target=/m true\n` });
    expect(fromContext.res.code).not.toBe(0);
    expect(fromContext.res.stderr).toContain('Cannot compute checksum of missing: not found in the build context');
    const fromStage = await buildFiles({ Dockerfile: `FROM ${busybox} AS s\nFROM ${busybox}\nRUN --mount=from=s,source=/missing,target=/m true\n` });
    expect(fromStage.res.code).not.toBe(0);
    expect(fromStage.res.stderr).toContain('Cannot mount /missing at /m: /missing not found in the mount\'s source');
  }, 120_000);

  test('a tmpfs mount honours its size and is absent from the image', async () => {
    const r = await buildFiles({
      Dockerfile: `FROM ${busybox}\nRUN --mount=type=tmpfs,target=/t,size=2m echo x > /t/f && df -k /t | tail -1 | awk '{print $2}' > /tsize && stat -c %a /t > /tmode\n`,
    });
    expect(r.res.code).toBe(0);
    expect(hasContent(r.files['tsize'], '2048\n')).toBe(true);
    // runc gives the tmpfs the mode of the directory it covers, here the 0755 one made for it
    expect(hasContent(r.files['tmode'], '755\n')).toBe(true);
    expect(r.files['t']).toMatchObject({ type: 'dir', mode: '0o755', uid: 0, gid: 0 });
    expect(r.files['t/f']).toBeUndefined();
  }, 120_000);

  test('after the builds no mount, scratch copy or view is left under the daemon root', async () => {
    expect(await mountsUnder(root)).toEqual([]);
    const leftovers = (await fsp.readdir(path.join(root, 'tmp')).catch(() => [] as string[])).filter((d) => /^(bind-rw-|mount-scratch-)/.test(d));
    expect(leftovers).toEqual([]);
  });
});
