import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { createServer, Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { flattenImage } from '../conformance/harness/flatten-image';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';
import { freePort } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

const run = promisify(execFile);

type FileEntry = { type: string; mode: string; uid: number; gid: number; sha256?: string; target?: string };

async function flatten(archive: string): Promise<{ config: Record<string, unknown>; files: Record<string, FileEntry> }> {
  return flattenImage(archive);
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/**
 * Dockerfile features the reference builder on this machine cannot build (it is BuildKit
 * ~v0.8: no heredocs, no named contexts), so conformance cannot check them: built here end to
 * end with the real daemon, and their results checked file by file.
 */
describe('Dockerfile features beyond the reference, end to end', () => {
  let env: BuildEnv;
  let http: Server;
  let httpBase: string;

  beforeAll(async () => {
    env = await startBuildEnv();
    http = createServer((req, res) => {
      if (req.url === '/files/tool.sh') {
        res.writeHead(200, { 'Last-Modified': 'Wed, 21 Oct 2015 07:28:00 GMT', 'Content-Type': 'text/plain' });
        res.end('#!/bin/sh\necho tool\n');
      } else {
        res.writeHead(404);
        res.end('no');
      }
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    httpBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  }, 120_000);

  afterAll(async () => {
    await new Promise<void>((resolve) => http?.close(() => resolve()));
    await env?.stop();
  });

  async function buildToFiles(name: string, files: Parameters<typeof writeContext>[1], extra: string[] = []): Promise<{ res: Awaited<ReturnType<BuildEnv['build']>>; image?: Awaited<ReturnType<typeof flatten>> }> {
    const ctx = await writeContext(path.join(env.tmp, name), files);
    const out = path.join(env.tmp, `${name}.oci.tar`);
    const res = await env.build(ctx, ['--output', `type=oci,dest=${out}`, ...extra]);
    return { res, image: res.code === 0 ? await flatten(out) : undefined };
  }

  test('RUN and COPY heredocs, with an interpreter line and a quoted delimiter', async () => {
    const { res, image } = await buildToFiles('heredocs', {
      Dockerfile: [
        `FROM ${env.busybox}`,
        'ARG WHO=world',
        'RUN <<EOF',
        'echo "hello $WHO" > /greeting',
        'echo second >> /greeting',
        'EOF',
        'RUN <<EOF',
        '#!/bin/sh -e',
        'echo "from an interpreter" > /interp',
        'EOF',
        "COPY <<'EOT' /literal.txt",
        'kept as $WHO',
        'EOT',
        'COPY <<EOT /expanded.txt',
        'expanded ${WHO}',
        'EOT',
        '',
      ].join('\n'),
    });
    expect(res.stderr).toContain('RUN <<EOF');
    expect(res.code).toBe(0);
    const files = image?.files ?? {};
    expect(files['greeting']?.sha256).toBe(sha('hello world\nsecond\n'));
    expect(files['interp']?.sha256).toBe(sha('from an interpreter\n'));
    expect(files['literal.txt']?.sha256).toBe(sha('kept as $WHO\n'));
    expect(files['expanded.txt']?.sha256).toBe(sha('expanded world\n'));
  }, 120_000);

  test('named contexts: a docker-image:// and a local: context used in FROM and COPY --from', async () => {
    const extraDir = await writeContext(path.join(env.tmp, 'extra-local'), { 'data/from-local.txt': 'local context\n' });
    const { res, image } = await buildToFiles('named', {
      Dockerfile: 'FROM base\nCOPY --from=extra /data/from-local.txt /from-local.txt\nRUN test -x /bin/busybox && echo ok > /ran\n',
    }, ['--opt', `context:base=docker-image://${env.busybox}`, '--opt', 'context:extra=local:extra', '--local', `extra=${extraDir}`]);
    expect(res.stderr).toMatch(/FROM/);
    expect(res.code).toBe(0);
    expect(image?.files['from-local.txt']?.sha256).toBe(sha('local context\n'));
    expect(image?.files['ran']).toBeDefined();
  }, 120_000);

  test('ADD of an http URL: checksum verified, mode 0600, a wrong checksum fails naming both digests', async () => {
    const body = '#!/bin/sh\necho tool\n';
    const { res, image } = await buildToFiles('add-url', {
      Dockerfile: `FROM ${env.busybox}\nADD --checksum=sha256:${sha(body)} ${httpBase}/files/tool.sh /opt/\n`,
    });
    expect(res.code).toBe(0);
    expect(image?.files['opt/tool.sh']).toMatchObject({ type: 'file', mode: '0o600', sha256: sha(body) });
    const wrong = await buildToFiles('add-url-wrong', { Dockerfile: `FROM ${env.busybox}\nADD --checksum=sha256:${'0'.repeat(64)} ${httpBase}/files/tool.sh /opt/\n` });
    expect(wrong.res.code).not.toBe(0);
    expect(wrong.res.stderr).toContain(sha(body));
    const missing = await buildToFiles('add-url-404', { Dockerfile: `FROM ${env.busybox}\nADD ${httpBase}/nothing /opt/\n` });
    expect(missing.res.code).not.toBe(0);
    expect(missing.res.stderr).toMatch(/404/);
  }, 120_000);

  test('ADD of a git repository at a tag, one subdirectory, without .git', async () => {
    const repo = path.join(env.tmp, 'repo');
    await fsp.mkdir(path.join(repo, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(repo, 'sub', 'file.txt'), 'from git\n');
    await fsp.writeFile(path.join(repo, 'top.txt'), 'top\n');
    const git = (...args: string[]) => run('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args]);
    await git('init', '-q');
    await git('add', '.');
    await git('commit', '-qm', 'one');
    await git('tag', 'v1');
    // A real git server on loopback: `git daemon` serving the test's repository over git://.
    const port = await freePort();
    const daemon = spawn('git', ['daemon', `--base-path=${env.tmp}`, '--export-all', '--reuseaddr', '--listen=127.0.0.1', `--port=${port}`, env.tmp], { stdio: 'ignore' });
    try {
      await waitFor('git daemon to listen', () => new Promise<boolean | undefined>((resolve) => {
        const sock = connect(port, '127.0.0.1', () => { sock.end(); resolve(true); });
        sock.on('error', () => resolve(undefined));
      }));
      const { res, image } = await buildToFiles('add-git', { Dockerfile: `FROM ${env.busybox}\nADD git://127.0.0.1:${port}/repo#v1:sub /src/\n` });
      expect(res.stderr).toContain('ADD git://');
      expect(res.code).toBe(0);
      expect(image?.files['src/file.txt']?.sha256).toBe(sha('from git\n'));
      expect(image?.files['src/top.txt']).toBeUndefined();
      expect(Object.keys(image?.files ?? {}).some((f) => f.startsWith('src/.git'))).toBe(false);
    } finally {
      daemon.kill();
      await new Promise((resolve) => daemon.once('exit', resolve));
    }
  }, 120_000);

  test('RUN --mount of an unknown type or with a misspelt option fails clearly at its line; warnings reach the client', async () => {
    const mount = await buildToFiles('run-mount', { Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=nfs,target=/x true\n` });
    expect(mount.res.code).not.toBe(0);
    expect(mount.res.stderr).toMatch(/Dockerfile:2/);
    expect(mount.res.stderr).toMatch(/nfs/);
    const typo = await buildToFiles('run-mount-typo', { Dockerfile: `FROM ${env.busybox}\nRUN --mount=type=cache,targte=/x true\n` });
    expect(typo.res.code).not.toBe(0);
    expect(typo.res.stderr).toMatch(/targte/);
    const warned = await buildToFiles('warnings', { Dockerfile: `FROM ${env.busybox} as base\nMAINTAINER someone\nCMD echo hi\n` });
    expect(warned.res.code).toBe(0);
    expect(warned.res.stderr).toMatch(/WARNING: .*MAINTAINER/i);
    expect(warned.res.stderr).toMatch(/WARNING: .*JSON/i);
  }, 120_000);
});
