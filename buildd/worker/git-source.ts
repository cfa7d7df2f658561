import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { BuildError } from '../../solver/build-error';
import { PathPatterns } from '../../store/path-pattern';
import type { Snapshotter } from '../../store/snapshotter';
import { TreeCopier } from '../../store/tree-copier';
import { isCommitId, parseGitRemote, pickRef, redactGitUrl, type GitRemote } from './git-remote';
import { gitEnv } from './git-env';

const gitAttrsSchema = z.object({
  remote: z.string().min(1).max(4096),
  ref: z.string().max(1024).regex(/^[^\s\0-][^\s\0]*$|^$/).optional(),
  subdir: z.string().max(4096).optional(),
  keepGitDir: z.enum(['true', 'false']).optional(),
}).passthrough();

/** What a git source op asks for, checked. */
export interface GitRequest {
  remote: GitRemote;
  ref: string;
  /** cleaned, without leading `/`; '' for the whole tree */
  subdir: string;
  keepGitDir: boolean;
}

const MAX_OUTPUT = 1024 * 1024;

/** What git and ssh print when the server wants credentials that were not given. */
const AUTH_FAILURE = /Permission denied \(|Authentication failed|could not read (Username|Password)|terminal prompts disabled|HTTP Basic: Access denied/i;
/** What they print when the server could not be reached at all. */
const UNREACHABLE = /Connection refused|Connection timed out|No route to host|Could not resolve (host|hostname)|Failed to connect to|Name or service not known/i;

/**
 * ADD <git remote>: a checkout as a snapshot, as BuildKit's git source makes it. Spawns
 * Debian's git with no terminal prompt, no credential helper, no system or user config, and
 * an ssh that uses none of the daemon user's keys, agent, config or known_hosts (git-env.ts):
 * - `resolve` runs `git ls-remote` and returns the commit a ref names (a full commit id is
 *   taken as is) — the cache key is that commit with subdir and keepGitDir;
 * - `checkout` fetches just that commit (`git fetch --depth 1`, a full fetch when the server
 *   refuses a commit id), checks it out under umask 022 (files 0644/0755, dirs 0755, owner
 *   0:0, mtime of the checkout), keeps only attrs.subdir (real directories only), drops
 *   `.git` unless keepGitDir (kept only for the whole tree, as BuildKit), and commits.
 * Lifecycle: one per worker; each checkout's temp directory is removed in every outcome.
 */
export class GitSource {
  constructor(private readonly snapshotter: Snapshotter, private readonly tmpDir: string) {}

  static request(identifier: string, attrs: Record<string, string>): GitRequest {
    const parsed = gitAttrsSchema.safeParse(attrs);
    if (!parsed.success) throw new BuildError('invalid-argument', `Cannot use source ${identifier}: bad attributes (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
    const subdir = path.posix.normalize('/' + (parsed.data.subdir ?? '')).replace(/^\/+|\/+$/g, '');
    return { remote: parseGitRemote(parsed.data.remote), ref: parsed.data.ref ?? '', subdir, keepGitDir: parsed.data.keepGitDir === 'true' };
  }

  async resolve(req: GitRequest, signal: AbortSignal): Promise<string> {
    if (isCommitId(req.ref)) return req.ref;
    const patterns = req.ref === '' ? ['HEAD'] : [req.ref, `${req.ref}^{}`];
    const out = await runGit(['ls-remote', '--', req.remote.url, ...patterns], undefined, signal, req.remote);
    const picked = pickRef(out, req.ref);
    if (!picked) throw new BuildError('not-found', `Cannot resolve git ref ${JSON.stringify(req.ref || 'HEAD')}: ${redactGitUrl(req.remote.url)} has no such branch or tag`);
    return picked.commit;
  }

  /** Checks out `commit` of the remote and commits the snapshot; returns its id. */
  async checkout(req: GitRequest, commit: string, signal: AbortSignal): Promise<string> {
    const work = await fsp.mkdtemp(path.join(this.tmpDir, 'git-'));
    try {
      const repo = path.join(work, 'repo');
      await fsp.mkdir(repo);
      await runGit(['init', '-q'], repo, signal);
      await runGit(['remote', 'add', 'origin', req.remote.url], repo, signal);
      const wants = isCommitId(req.ref) ? [commit] : [req.ref === '' ? 'HEAD' : req.ref];
      try {
        await runGit(['fetch', '-q', '--depth', '1', '--no-tags', 'origin', ...wants], repo, signal, req.remote);
      } catch (err) {
        if (signal.aborted || !isCommitId(req.ref)) throw err;
        // Servers that refuse unadvertised commits: fetch everything, then pick the commit.
        await runGit(['fetch', '-q', '--no-tags', 'origin', '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*'], repo, signal, req.remote);
      }
      await runGit(['-c', 'advice.detachedHead=false', 'checkout', '-q', commit], repo, signal);
      const got = (await runGit(['rev-parse', 'HEAD'], repo, signal)).trim();
      if (got !== commit) throw new BuildError('failed-precondition', `Cannot check out ${redactGitUrl(req.remote.url)}: got commit ${got}, expected ${commit} (the ref moved during the build)`);
      const top = req.subdir === '' ? repo : await subdirOf(repo, req.subdir);
      const keepGit = req.keepGitDir && req.subdir === '';
      const active = await this.snapshotter.prepare(undefined, signal);
      try {
        const root = await active.mount();
        const exclude = keepGit ? undefined : new PathPatterns(['.git']);
        await TreeCopier.copy({ owner: { uid: 0, gid: 0 }, exclude }, (c) => c.copyChildren(top, root));
        return await this.snapshotter.commit(active);
      } finally {
        await active.release();
      }
    } finally {
      await fsp.rm(work, { recursive: true, force: true });
    }
  }
}

/** `subdir` inside the checkout, each component a real directory (no symlinks), as BuildKit requires. */
async function subdirOf(repo: string, subdir: string): Promise<string> {
  let cur = repo;
  for (const part of subdir.split('/')) {
    cur = path.join(cur, part);
    const st = await fsp.lstat(cur).catch(() => undefined);
    if (!st?.isDirectory()) throw new BuildError('not-found', `Cannot use git subdir ${subdir}: ${part} is not a directory in the checkout`);
  }
  return cur;
}

/**
 * Runs git under umask 022 in the closed environment of `gitEnv`; resolves to stdout, rejects
 * with stderr. With `remote`, the command talks to that remote and its failure says so:
 * `Cannot fetch git repository <url>: <git's error>` (credentials in the URL redacted).
 */
function runGit(args: string[], cwd: string | undefined, signal: AbortSignal, remote?: GitRemote): Promise<string> {
  const full = ['-c', 'credential.helper=', '-c', 'core.hooksPath=/dev/null', '-c', 'init.defaultBranch=main', ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', 'umask 022 && exec git "$@"', 'git', ...full], { cwd, env: gitEnv(), signal, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      if (out.length < MAX_OUTPUT) out += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 8192) err += d.toString('utf8');
    });
    child.on('error', (e) => reject(signal.aborted ? e : new BuildError('internal', `Cannot run git ${args[0]}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      const why = err.trim().slice(0, 1000);
      if (remote === undefined) return reject(new BuildError('failed-precondition', `Cannot run git ${args[0]}: exit code ${code}: ${why}`));
      const url = redactGitUrl(remote.url);
      const message = `Cannot fetch git repository ${url}: ${why.split(remote.url).join(url) || `git ${args[0]} exited with code ${code}`}`;
      reject(new BuildError(AUTH_FAILURE.test(err) ? 'unauthenticated' : UNREACHABLE.test(err) ? 'unavailable' : 'failed-precondition', message));
    });
  });
}
