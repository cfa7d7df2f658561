import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';

const run = promisify(execFile);
jest.setTimeout(180_000);

/**
 * --output type=tar and type=local, as BuildKit's tar and local exporters: the result's whole
 * filesystem, as a tar at dest (or on stdout) and unpacked into a directory on the client's
 * side, read by the tools that consume them (tar, diff -r).
 */
let env: BuildEnv;
let ctx: string;

beforeAll(async () => {
  env = await startBuildEnv();
  ctx = await writeContext(path.join(env.tmp, 'ctx'), {
    Dockerfile: [
      // the result is the RUN's filesystem (busybox and /out): owners as the RUN left them
      `FROM ${env.busybox}`,
      'RUN mkdir -p /out/sub && echo hello > /out/a.txt && printf "x%.0s" $(seq 1 100000) > /out/sub/big && ln -s a.txt /out/link && ln /out/a.txt /out/hard && chmod 0750 /out/sub && chown 1000:1000 /out/a.txt',
      '',
    ].join('\n'),
  });
}, 180_000);

afterAll(async () => {
  await env?.stop();
});

test('type=tar writes the final filesystem as a tar that tar reads: modes, owners, links', async () => {
  const file = path.join(env.tmp, 'fs.tar');
  const res = await env.build(ctx, ['--output', `type=tar,dest=${file}`]);
  expect(res.code).toBe(0);
  expect(res.stderr).toContain('exporting to client tarball');
  const { stdout } = await run('tar', ['-tvf', file, '--numeric-owner']);
  const lines = stdout.trim().split('\n').filter((l) => / out\//.test(l));
  expect(lines.map((l) => l.split(/\s+/).slice(5).join(' ')).sort()).toEqual(['out/', 'out/a.txt', 'out/hard link to out/a.txt', 'out/link -> a.txt', 'out/sub/', 'out/sub/big'].sort());
  expect(lines.find((l) => / out\/a\.txt$/.test(l))).toMatch(/^-rw-r--r-- 1000\/1000 +6 /);
  expect(lines.find((l) => / out\/sub\/$/.test(l))).toMatch(/^drwxr-x--- 0\/0 /);
  // the base image's files are there too: it is the whole filesystem
  expect(stdout).toMatch(/ bin\/busybox\n/);
});

test('type=tar,dest=- writes the tar to stdout', async () => {
  const res = await env.build(ctx, ['--output', 'type=tar,dest=-']);
  expect(res.code).toBe(0);
  const file = path.join(env.tmp, 'stdout.tar');
  await fsp.writeFile(file, res.stdoutBytes);
  const { stdout } = await run('tar', ['-tf', file]);
  expect(stdout.split('\n')).toContain('out/sub/big');
});

test('type=local unpacks the final filesystem into dest on the client: diff -r finds it as built', async () => {
  const dest = path.join(env.tmp, 'out-dir');
  const res = await env.build(ctx, ['--output', `type=local,dest=${dest}`]);
  expect(res.code).toBe(0);
  expect(res.stderr).toContain('exporting to client directory');
  const expected = path.join(env.tmp, 'expected');
  await fsp.mkdir(path.join(expected, 'sub'), { recursive: true });
  await fsp.writeFile(path.join(expected, 'a.txt'), 'hello\n');
  await fsp.writeFile(path.join(expected, 'hard'), 'hello\n');
  await fsp.writeFile(path.join(expected, 'sub', 'big'), 'x'.repeat(100_000));
  await fsp.symlink('a.txt', path.join(expected, 'link'));
  await run('diff', ['-r', '--no-dereference', expected, path.join(dest, 'out')]);
  const st = await fsp.lstat(path.join(dest, 'out', 'a.txt'));
  expect([st.uid, st.gid, (await fsp.stat(path.join(dest, 'out', 'hard'))).ino]).toEqual([1000, 1000, st.ino]);
  expect((await fsp.stat(path.join(dest, 'out', 'sub'))).mode & 0o7777).toBe(0o750);
  expect((await fsp.lstat(path.join(dest, 'bin', 'busybox'))).isFile()).toBe(true);
  // nothing of the transfer is left beside it
  expect((await fsp.readdir(require('node:os').tmpdir())).filter((n: string) => n.startsWith('buildctl-local-'))).toEqual([]);
});

test('type=local needs a directory; two filesystem outputs in one build are refused before it runs', async () => {
  const res = await env.build(ctx, ['--output', 'type=local,dest=-']);
  expect(res.code).toBe(2);
  expect(res.stderr).toContain('type=local needs dest=DIR');
  const two = await env.build(ctx, ['--output', `type=local,dest=${path.join(env.tmp, 'x')}`, '--output', `type=tar,dest=${path.join(env.tmp, 'x.tar')}`]);
  expect(two.code).toBe(2);
  expect(two.stderr).toContain('at most one oci/docker/tar/local output per build');
});
