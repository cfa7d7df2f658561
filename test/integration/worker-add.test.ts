import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { GitSource } from '../../buildd/worker/git-source';
import { parseGitRemote } from '../../buildd/worker/git-remote';
import { HttpSource } from '../../buildd/worker/http-source';
import { RemoteSources } from '../../buildd/worker/remote-sources';
import type { SourceOp } from '../../solver/op';
import { LocalContentStore } from '../../store/content-store';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { cleanupRoot } from '../helpers/store-mounts';

let root: string;
let snapshotter: OverlaySnapshotter;
let sources: RemoteSources;
let server: http.Server;
let base: string;
let body = 'hello v1\n';
const signal = new AbortController().signal;
const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT';

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-add-'));
  snapshotter = await OverlaySnapshotter.open(path.join(root, 'snap'));
  await fsp.mkdir(path.join(root, 'tmp'));
  const content = await LocalContentStore.open(path.join(root, 'content'));
  sources = new RemoteSources(new HttpSource(snapshotter, content), new GitSource(snapshotter, path.join(root, 'tmp')));
  server = http.createServer((req, res) => {
    if (req.url === '/missing') return res.writeHead(404).end('no');
    if (req.url === '/redirect') return res.writeHead(302, { location: '/files/app.tgz' }).end();
    res.writeHead(200, req.url === '/files/app.tgz' ? { 'last-modified': LAST_MODIFIED } : {}).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await cleanupRoot(root);
});

function op(identifier: string, attrs: Record<string, string> = {}): SourceOp {
  return { kind: 'source', identifier, attrs };
}

/** rel path → `mode uid:gid content` of a committed snapshot's files */
async function contents(id: string): Promise<Record<string, string>> {
  const view = await snapshotter.mountView(id);
  try {
    const out: Record<string, string> = {};
    const walk = async (rel: string): Promise<void> => {
      for (const name of (await fsp.readdir(path.join(view.path, rel))).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        const st = await fsp.lstat(path.join(view.path, r));
        if (st.isDirectory()) {
          out[r + '/'] = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
          await walk(r);
        } else out[r] = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${await fsp.readFile(path.join(view.path, r), 'utf8')}`;
      }
    };
    await walk('');
    return out;
  } finally {
    await view.release();
  }
}

describe('ADD <url>', () => {
  test('a file named after the URL path, mode 0600, mtime from Last-Modified', async () => {
    const o = op(`${base}/files/app.tgz`);
    await sources.cacheKey('v1', o, signal);
    const id = await sources.run('v1', o, signal);
    expect(await contents(id)).toEqual({ 'app.tgz': `600 0:0 ${body}` });
    const view = await snapshotter.mountView(id);
    expect((await fsp.stat(path.join(view.path, 'app.tgz'))).mtime.toUTCString()).toBe(LAST_MODIFIED);
    await view.release();
  });

  test('attrs.filename and attrs.chmod; redirects are followed; no path gives __unnamed__', async () => {
    expect(await contents(await sources.run('v2', op(`${base}/redirect`, { filename: 'x.bin', chmod: '755' }), signal))).toEqual({ 'x.bin': `755 0:0 ${body}` });
    expect(HttpSource.filename(`${base}/`, {})).toBe('__unnamed__');
  });

  test('the name is the decoded last path segment; bad percent-encoding gives __unnamed__', () => {
    expect(HttpSource.filename(`${base}/dir/my%20file.txt?x=1`, {})).toBe('my file.txt');
    expect(HttpSource.filename(`${base}/dir/bad%zz`, {})).toBe('__unnamed__');
    expect(HttpSource.filename(`${base}/dir/%E0%A4%A`, {})).toBe('__unnamed__');
    expect(HttpSource.filename(`${base}/dir/nul%00`, {})).toBe('__unnamed__');
  });

  test('a matching checksum passes; a mismatch names both digests', async () => {
    const good = 'sha256:' + createHash('sha256').update(body).digest('hex');
    const bad = 'sha256:' + '0'.repeat(64);
    await expect(sources.run('v3', op(`${base}/f`, { checksum: good }), signal)).resolves.toEqual(expect.any(String));
    await expect(sources.run('v4', op(`${base}/f`, { checksum: bad }), signal)).rejects.toThrow(`checksum mismatch: expected ${bad}, got ${good}`);
  });

  test('an HTTP error names the URL and the status', async () => {
    await expect(sources.run('v5', op(`${base}/missing`), signal)).rejects.toThrow(`Cannot download ${base}/missing: the server answered HTTP 404`);
  });

  test('the cache key follows the content: same content hits, changed content misses', async () => {
    const o = op(`${base}/files/data`);
    const k1 = await sources.cacheKey('v6', o, signal);
    expect(await sources.cacheKey('v6', o, signal)).toBe(k1);
    body = 'hello v2\n';
    const k2 = await sources.cacheKey('v6', o, signal);
    expect(k2).not.toBe(k1);
    expect(await contents(await sources.run('v6', o, signal))).toEqual({ data: '600 0:0 hello v2\n' });
    const pinned = { kind: 'source' as const, identifier: o.identifier, attrs: { checksum: 'sha256:' + 'a'.repeat(64) } };
    expect(await sources.cacheKey('v7', pinned, signal)).toBe(await sources.cacheKey('v7', pinned, signal));
  });
});

describe('ADD <git remote>', () => {
  let repo: string;
  let first: string;
  let second: string;
  const git = (...args: string[]): string => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { encoding: 'utf8' }).trim();

  beforeAll(async () => {
    repo = path.join(root, 'repo');
    await fsp.mkdir(path.join(repo, 'sub/dir'), { recursive: true });
    execFileSync('git', ['init', '-q', '-b', 'main', repo]);
    await fsp.writeFile(path.join(repo, 'a.txt'), 'a1\n');
    await fsp.writeFile(path.join(repo, 'sub/dir/run.sh'), 'echo\n', { mode: 0o700 });
    git('add', '.');
    git('commit', '-q', '-m', 'one');
    git('tag', '-a', 'v1', '-m', 'v1');
    first = git('rev-parse', 'HEAD');
    await fsp.writeFile(path.join(repo, 'a.txt'), 'a2\n');
    git('commit', '-q', '-am', 'two');
    second = git('rev-parse', 'HEAD');
  });

  const gitOp = (attrs: Record<string, string>): SourceOp => op(`git://${repo}`, { remote: `file://${repo}`, ...attrs });

  test('a branch: the tree at its head, .git dropped, modes from git, owner 0:0', async () => {
    const o = gitOp({ ref: 'main' });
    const key = await sources.cacheKey('g1', o, signal);
    expect(await contents(await sources.run('g1', o, signal))).toEqual({ 'a.txt': '644 0:0 a2\n', 'sub/': '755 0:0', 'sub/dir/': '755 0:0', 'sub/dir/run.sh': '755 0:0 echo\n' });
    expect(await sources.cacheKey('g1b', gitOp({ ref: second }), signal)).toBe(key);
  });

  test('an annotated tag and a full commit id check out that commit', async () => {
    expect((await contents(await sources.run('g2', gitOp({ ref: 'v1' }), signal)))['a.txt']).toBe('644 0:0 a1\n');
    expect((await contents(await sources.run('g3', gitOp({ ref: first }), signal)))['a.txt']).toBe('644 0:0 a1\n');
    expect(await sources.cacheKey('g2', gitOp({ ref: 'v1' }), signal)).toBe(await sources.cacheKey('g3', gitOp({ ref: first }), signal));
  });

  test('subdir keeps only that directory; keepGitDir keeps .git', async () => {
    expect(await contents(await sources.run('g4', gitOp({ ref: 'main', subdir: 'sub/dir' }), signal))).toEqual({ 'run.sh': '755 0:0 echo\n' });
    const kept = await sources.run('g5', gitOp({ ref: 'main', keepGitDir: 'true' }), signal);
    expect(Object.keys(await contents(kept))).toContain('.git/HEAD');
    expect(await sources.cacheKey('g5', gitOp({ ref: 'main', keepGitDir: 'true' }), signal)).not.toBe(await sources.cacheKey('g1', gitOp({ ref: 'main' }), signal));
  });

  test('a missing ref is not-found', async () => {
    await expect(sources.cacheKey('g6', gitOp({ ref: 'nope' }), signal)).rejects.toThrow(/Cannot resolve git ref "nope"/);
  });

  test('remotes: URLs and scp-style parse, options and unknown transports are refused', () => {
    expect(parseGitRemote('git@github.com:moby/buildkit.git').transport).toBe('ssh');
    expect(parseGitRemote('https://example.com/r.git').transport).toBe('https');
    expect(parseGitRemote('git://127.0.0.1/r').transport).toBe('git');
    expect(() => parseGitRemote('--upload-pack=touch /x')).toThrow(/Cannot use git remote/);
    expect(() => parseGitRemote('ext::sh -c x')).toThrow(/Cannot use git remote/);
    expect(() => parseGitRemote('/plain/path')).toThrow(/Cannot use git remote/);
  });
});
