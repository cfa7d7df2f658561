import { promises as fsp } from 'node:fs';
import { BuildError } from '../solver/build-error';
import { resolveInRoot } from './safe-path';

/** A user as a process runs with it. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** supplementary groups from /etc/group */
  additionalGids: number[];
  /** home directory from /etc/passwd, when the user is listed there */
  home?: string;
}

const MAX_DB_BYTES = 4 * 1024 * 1024;

/**
 * Resolves `user[:group]` (names or numbers, as in USER or --chown) against the /etc/passwd
 * and /etc/group of the filesystem at `root`, read inside that root (a symlinked
 * /etc/passwd pointing at the host's is resolved inside `root`, never on the host).
 * An empty spec is root. A name that is not listed is an error, as in Docker.
 */
export async function resolveUser(root: string, spec: string): Promise<ResolvedUser> {
  const [userPart, groupPart] = splitSpec(spec);
  const passwd = await readDb(root, '/etc/passwd');
  let uid: number;
  let gid: number;
  let home: string | undefined;
  let name: string | undefined;
  if (isNumeric(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((f) => f[2] === userPart);
    gid = entry && isNumeric(entry[3]) ? Number(entry[3]) : 0;
    home = entry?.[5];
    name = entry?.[0];
  } else {
    const entry = passwd.find((f) => f[0] === userPart);
    if (!entry || !isNumeric(entry[2]) || !isNumeric(entry[3])) {
      throw new BuildError('invalid-argument', `Cannot resolve user ${userPart}: no such user in /etc/passwd`);
    }
    uid = Number(entry[2]);
    gid = Number(entry[3]);
    home = entry[5];
    name = entry[0];
  }
  const groups = await readDb(root, '/etc/group');
  if (groupPart !== undefined) {
    if (isNumeric(groupPart)) {
      gid = Number(groupPart);
    } else {
      const entry = groups.find((f) => f[0] === groupPart);
      if (!entry || !isNumeric(entry[2])) {
        throw new BuildError('invalid-argument', `Cannot resolve group ${groupPart}: no such group in /etc/group`);
      }
      gid = Number(entry[2]);
    }
  }
  const additionalGids =
    name === undefined || groupPart !== undefined
      ? []
      : groups
          .filter((f) => (f[3] ?? '').split(',').includes(name as string) && isNumeric(f[2]))
          .map((f) => Number(f[2]))
          .filter((g) => g !== gid);
  return { uid, gid, additionalGids, home };
}

/**
 * The owner COPY/ADD --chown gives what it writes, resolved against the destination's
 * /etc/passwd and /etc/group at `root` (read inside it), with BuildKit's chown rules, which
 * differ from a RUN's USER (resolveUser): a numeric user without a group takes its uid as
 * gid whatever /etc/passwd says; `:group` alone (an empty user) is root with that group.
 * No `chown` is 0:0. A name that is not listed is an error.
 */
export async function resolveChownOwner(root: string, chown: { user: string; group?: string } | undefined): Promise<{ uid: number; gid: number }> {
  if (!chown) return { uid: 0, gid: 0 };
  if (chown.group === undefined && /^[0-9]+$/.test(chown.user)) return { uid: Number(chown.user), gid: Number(chown.user) };
  const user = await resolveUser(root, chown.group === undefined ? chown.user : `${chown.user}:${chown.group}`);
  return { uid: user.uid, gid: user.gid };
}

function splitSpec(spec: string): [string, string | undefined] {
  const trimmed = spec.trim();
  if (trimmed === '') return ['0', undefined];
  const i = trimmed.indexOf(':');
  if (i < 0) return [trimmed, undefined];
  return [trimmed.slice(0, i) || '0', trimmed.slice(i + 1) || undefined];
}

function isNumeric(s: string | undefined): s is string {
  return s !== undefined && /^[0-9]{1,10}$/.test(s) && Number(s) <= 0xffffffff;
}

async function readDb(root: string, file: string): Promise<string[][]> {
  const p = await resolveInRoot(root, file);
  let text: string;
  try {
    const st = await fsp.stat(p);
    if (!st.isFile() || st.size > MAX_DB_BYTES) return [];
    text = await fsp.readFile(p, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
  return text
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('#'))
    .map((l) => l.split(':'));
}
