/**
 * What an ADD source is: a file of the build context, an http(s) URL (one downloaded file),
 * or a git repository, recognized as BuildKit does (`git://`, `git@host:`, `ssh://`, an
 * http(s) URL whose path ends in `.git`, or `github.com/...`), with `#ref:subdir`.
 */

export type AddSource =
  | { kind: 'local'; path: string }
  | { kind: 'http'; url: string; filename: string }
  | { kind: 'git'; remote: string; ref?: string; subdir?: string };

export function classifyAddSource(src: string): AddSource {
  const hash = src.indexOf('#');
  const base = hash < 0 ? src : src.slice(0, hash);
  const isGit = /^(git:\/\/|git@[^:]+:|ssh:\/\/)/.test(src) || /^https?:\/\/\S+\.git\/?$/.test(base) || /^(https?:\/\/)?github\.com\/[^/]+\/[^/]+/.test(base) && hash >= 0;
  if (isGit) {
    const fragment = hash < 0 ? '' : src.slice(hash + 1);
    const colon = fragment.indexOf(':');
    const ref = colon < 0 ? fragment : fragment.slice(0, colon);
    const subdir = colon < 0 ? '' : fragment.slice(colon + 1);
    return { kind: 'git', remote: base, ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}) };
  }
  if (/^https?:\/\//i.test(src)) return { kind: 'http', url: src, filename: urlFilename(src) };
  return { kind: 'local', path: src };
}

/** The last segment of the URL's path, as BuildKit names a downloaded file. */
function urlFilename(url: string): string {
  let pathname = '';
  try {
    pathname = new URL(url).pathname;
  } catch {
    pathname = '';
  }
  const name = decodeURIComponentSafe(pathname.split('/').filter((p) => p !== '').pop() ?? '');
  return name === '' || name === '.' || name === '..' ? '__unnamed__' : name;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
