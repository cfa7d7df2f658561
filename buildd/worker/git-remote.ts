import { BuildError } from '../../solver/build-error';

/** A git remote as the worker may fetch it. */
export interface GitRemote {
  /** what is passed to git (unchanged from the op, once checked) */
  url: string;
  transport: 'https' | 'http' | 'git' | 'ssh' | 'file';
}

const SCP_LIKE = /^([A-Za-z0-9._~-]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?!\/\/)([^\s]+)$/;

/**
 * Parses attrs.remote of a git source: `https://`, `http://`, `git://`, `ssh://`, `file://`
 * URLs and scp-style `user@host:path`. Anything else (a bare path, `ext::`, a leading `-`
 * that git would read as an option) is invalid-argument.
 *
 * `file://` reads a repository on the daemon's machine: any path the daemon can read. It is
 * allowed because ADD of a file:// remote can only expose repositories, and a daemon that
 * serves untrusted clients should run where no private repository is readable.
 */
export function parseGitRemote(remote: string): GitRemote {
  if (remote.startsWith('-') || /[\s\0]/.test(remote)) throw bad(remote, 'it would be read as an option or holds whitespace');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(remote)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    let u: URL;
    try {
      u = new URL(remote);
    } catch {
      throw bad(remote, 'not a URL');
    }
    if (scheme === 'file') {
      if (u.host !== '' || u.pathname === '/') throw bad(remote, 'a file URL needs an absolute path and no host');
      return { url: remote, transport: 'file' };
    }
    if (scheme !== 'https' && scheme !== 'http' && scheme !== 'git' && scheme !== 'ssh') throw bad(remote, `transport ${scheme} is not supported`);
    if (u.hostname === '') throw bad(remote, 'no host');
    return { url: remote, transport: scheme };
  }
  if (SCP_LIKE.test(remote)) return { url: remote, transport: 'ssh' };
  throw bad(remote, 'not a URL or user@host:path');
}

/**
 * The remote as it may be shown in a message or log: a password or token in the URL's user
 * info becomes `xxxxx` (a user name alone is kept: `git@host:repo` says who logs in).
 */
export function redactGitUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/@]*)@/i.exec(url);
  if (!m || !m[2]!.includes(':')) return url;
  return `${m[1]}${m[2]!.slice(0, m[2]!.indexOf(':'))}:xxxxx@${url.slice(m[0].length)}`;
}

/** Whether `ref` is a full commit id (SHA-1 or SHA-256). */
export function isCommitId(ref: string): boolean {
  return /^[0-9a-f]{40}$/.test(ref) || /^[0-9a-f]{64}$/.test(ref);
}

/**
 * Picks the commit `ref` names from `git ls-remote` output: a full ref name as is; else a
 * tag (peeled to its commit), then a branch; an empty ref means HEAD.
 */
export function pickRef(lsRemote: string, ref: string): { commit: string; name: string } | undefined {
  const refs = new Map<string, string>();
  for (const line of lsRemote.split('\n')) {
    const [sha, name] = line.trim().split(/\s+/);
    if (sha && name && /^[0-9a-f]{40,64}$/.test(sha)) refs.set(name, sha);
  }
  const candidates = ref === '' || ref === 'HEAD'
    ? ['HEAD']
    : ref.startsWith('refs/')
      ? [`${ref}^{}`, ref]
      : [`refs/tags/${ref}^{}`, `refs/tags/${ref}`, `refs/heads/${ref}`];
  for (const c of candidates) {
    const sha = refs.get(c);
    if (sha) return { commit: sha, name: c.replace(/\^\{\}$/, '') };
  }
  return undefined;
}

function bad(remote: string, why: string): BuildError {
  return new BuildError('invalid-argument', `Cannot use git remote ${JSON.stringify(remote.slice(0, 200))}: ${why}`);
}
