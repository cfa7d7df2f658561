import { createHash, timingSafeEqual } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import bcrypt from 'bcryptjs';
import { BuildError } from '../../solver/build-error';

/** Largest htpasswd file read (a file of users, not a database). */
const MAX_HTPASSWD_BYTES = 1024 * 1024;
/** How long a checked user:password pair is trusted without running bcrypt again. */
const VERIFIED_TTL_MS = 5 * 60 * 1000;

/**
 * Basic authentication against an htpasswd file of bcrypt entries (`htpasswd -B`), as
 * distribution's htpasswd auth. bcrypt is slow by design (tens of milliseconds), and a push
 * makes a request per blob: a pair that checked out is remembered, in memory only and as a
 * SHA-256 of user and password, for a few minutes.
 *
 * Lifecycle: loaded once when the daemon starts (a changed file needs a restart).
 */
export class HtpasswdAuth {
  private readonly verified = new Map<string, { user: string; digest: Buffer; until: number }>();

  private constructor(private readonly users: ReadonlyMap<string, string>) {}

  static async load(file: string): Promise<HtpasswdAuth> {
    let text: string;
    try {
      const st = await fsp.stat(file);
      if (st.size > MAX_HTPASSWD_BYTES) throw new Error(`larger than ${MAX_HTPASSWD_BYTES} bytes`);
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      throw new BuildError('invalid-argument', `Cannot load htpasswd ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const users = new Map<string, string>();
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const colon = line.indexOf(':');
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (colon <= 0) throw new BuildError('invalid-argument', `Cannot load htpasswd ${file}: line ${i + 1} is not user:hash`);
      if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
        throw new BuildError('invalid-argument', `Cannot load htpasswd ${file}: line ${i + 1} (${user}): only bcrypt entries are accepted (htpasswd -B)`);
      }
      users.set(user, hash);
    });
    if (users.size === 0) throw new BuildError('invalid-argument', `Cannot load htpasswd ${file}: no users`);
    return new HtpasswdAuth(users);
  }

  /** The user an `Authorization: Basic ...` header proves, or undefined (no header, another scheme, a wrong password). */
  async check(authorization: string | undefined): Promise<string | undefined> {
    const m = /^Basic\s+([A-Za-z0-9+/=]{1,2048})$/i.exec(authorization?.trim() ?? '');
    if (!m) return undefined;
    const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return undefined;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const digest = createHash('sha256').update(`${user}\0${password}`).digest();
    const key = digest.toString('hex');
    const known = this.verified.get(key);
    const now = Date.now();
    if (known && known.until > now && timingSafeEqual(known.digest, digest)) return known.user;
    const hash = this.users.get(user);
    if (hash === undefined || !(await bcrypt.compare(password, hash))) return undefined;
    if (this.verified.size > 1024) this.verified.clear();
    this.verified.set(key, { user, digest, until: now + VERIFIED_TTL_MS });
    return user;
  }
}
