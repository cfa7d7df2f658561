import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import { DockerIgnore } from './dockerignore';

/** One entry of a local directory as it is sent to the daemon. */
export interface WalkEntry {
  /** '/'-separated path relative to the walked root */
  rel: string;
  /** host path, for reading a file's content */
  abs: string;
  type: 'FILE' | 'DIR' | 'SYMLINK';
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size: number;
  /** symlink target as text; never resolved */
  linkTarget: string;
}

/**
 * Walks `root` depth first in byte order of names (deterministic), with lstat only: a symlink
 * is reported as a symlink and never followed, so nothing outside `root` is read. Entries
 * ignored by `ignore` are skipped; a directory is reported before its children, and an
 * ignored directory only when something inside it is re-included by a `!` pattern. Sockets,
 * FIFOs and devices are skipped: a build context cannot carry them.
 *
 * Yields lazily, one directory listing in memory per level.
 */
export async function* walkContext(root: string, ignore?: DockerIgnore): AsyncGenerator<WalkEntry> {
  const st = await fsp.stat(root).catch((err: NodeJS.ErrnoException) => {
    throw new BuildError('invalid-argument', `Cannot read local directory ${root}: ${err.code ?? err.message}`);
  });
  if (!st.isDirectory()) throw new BuildError('invalid-argument', `Cannot read local directory ${root}: not a directory`);
  yield* walkDir(root, '', ignore, []);
}

async function* walkDir(root: string, relDir: string, ignore: DockerIgnore | undefined, pending: WalkEntry[]): AsyncGenerator<WalkEntry> {
  const absDir = relDir === '' ? root : path.join(root, relDir);
  const names = (await fsp.readdir(absDir)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const rel = relDir === '' ? name : `${relDir}/${name}`;
    const abs = path.join(absDir, name);
    const st = await fsp.lstat(abs);
    const type = st.isSymbolicLink() ? 'SYMLINK' : st.isDirectory() ? 'DIR' : st.isFile() ? 'FILE' : undefined;
    if (type === undefined) continue;
    const entry: WalkEntry = {
      rel,
      abs,
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtimeMs: Math.floor(st.mtimeMs),
      size: type === 'FILE' ? st.size : 0,
      linkTarget: type === 'SYMLINK' ? await fsp.readlink(abs) : '',
    };
    const ignored = ignore?.ignores(rel) ?? false;
    if (ignored && (type !== 'DIR' || !ignore?.hasExceptions)) continue;
    if (!ignored) {
      // parents held back because they were ignored are sent now that a child is included
      yield* pending.splice(0);
      yield entry;
    }
    if (type === 'DIR') {
      // `pending` is one stack shared by the recursion: an ignored dir waits on it until a
      // child is included (which flushes the stack) or its walk ends (and it is dropped).
      if (ignored) pending.push(entry);
      yield* walkDir(root, rel, ignore, pending);
      if (ignored && pending[pending.length - 1] === entry) pending.pop();
    }
  }
}

/**
 * The ignore rules of a context directory: `<Dockerfile path>.dockerignore` beside the
 * Dockerfile when it exists (BuildKit lets it take precedence), else the context's own
 * `.dockerignore`. Read with lstat: a symlink is not followed.
 */
export async function readDockerIgnore(contextDir: string, dockerfile?: string): Promise<DockerIgnore | undefined> {
  if (dockerfile !== undefined) {
    const specific = await readIgnoreFile(`${dockerfile}.dockerignore`);
    if (specific) return specific;
  }
  return readIgnoreFile(path.join(contextDir, '.dockerignore'));
}

/**
 * What the `dockerfile` local needs to send: the Dockerfile and its own .dockerignore only,
 * as BuildKit's frontend asks for just those, so a dockerfile dir that is also the context is
 * not sent twice.
 */
export function dockerfileOnly(filename: string): DockerIgnore {
  // escaped, so a name holding `*`, `?`, `[` or `\` is matched as itself, not as a glob
  const clean = path.posix.normalize(filename.replace(/^\/+/, '')).replace(/[\\*?[]/g, '\\$&');
  return DockerIgnore.parse(`**\n!${clean}\n!${clean}.dockerignore\n`);
}

async function readIgnoreFile(file: string): Promise<DockerIgnore | undefined> {
  const st = await fsp.lstat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  if (st.size > 1024 * 1024) throw new BuildError('invalid-argument', `Cannot read ${file}: larger than 1 MiB`);
  return DockerIgnore.parse(await fsp.readFile(file, 'utf8'));
}
