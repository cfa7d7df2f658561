import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { BuildError } from '../../solver/build-error';
import { readSmallFile } from '../../store/small-file';

/** Largest htpasswd file read (a file of users, not a database). */
const MAX_HTPASSWD_BYTES = 1024 * 1024;
/** How long a checked user:password pair is trusted without running bcrypt again. */
const VERIFIED_TTL_MS = 5 * 60 * 1000;
/** How long a pair that failed is refused without running bcrypt again (a client retrying it). */
const FAILED_TTL_MS = 60 * 1000;
/** bcrypt checks running at once: the rest wait, so wrong passwords cannot take every core. */
const MAX_CONCURRENT_CHECKS = 2;


/**
 * Basic authentication against an htpasswd file of bcrypt entries (`htpasswd -B`), as
 * distribution's htpasswd auth. bcrypt is slow by design (tens of milliseconds), and a push
 * makes a request per blob: a pair that checked out is remembered, in memory only and as a
 * SHA-256 of user and password, for a few minutes; one that failed is refused for a minute
 * without a new check. At most two checks run at once, and an unknown user is checked against
 * a dummy hash, so wrong passwords neither take the daemon's cores nor tell which users exist.
 *
 * Lifecycle: loaded once when the daemon starts (a changed file needs a restart).
 */
export class HtpasswdAuth {
  private readonly verified = new Map<string, { user: string; digest: Buffer; until: number }>();
  private readonly failed = new Map<string, number>();
  private running = 0;
  /** compared against for an unknown user, at the cost of the file's first entry, so that its answer takes as long as a known one's */
  private dummyHash: string | undefined;
  private readonly waiting: Array<() => void> = [];

  private constructor(private readonly users: ReadonlyMap<string, string>) {}

  static async load(file: string): Promise<HtpasswdAuth> {
    const text = await readSmallFile(file, MAX_HTPASSWD_BYTES, 'load htpasswd');
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
    if ((this.failed.get(key) ?? 0) > now) return undefined;
    const hash = this.users.get(user);
    this.dummyHash ??= bcrypt.hashSync('buildd: no such user', Number(/^\$2[aby]\$(\d\d)/.exec(this.users.values().next().value ?? '')?.[1] ?? 10));
    const against = hash ?? this.dummyHash;
    const ok = await this.bounded(() => bcrypt.compare(password, against));
    if (!ok || hash === undefined) {
      if (this.failed.size > 4096) this.failed.clear();
      this.failed.set(key, Date.now() + FAILED_TTL_MS);
      return undefined;
    }
    if (this.verified.size > 1024) this.verified.clear();
    this.verified.set(key, { user, digest, until: Date.now() + VERIFIED_TTL_MS });
    return user;
  }

  /** Runs `check` when fewer than MAX_CONCURRENT_CHECKS others run. */
  private async bounded<T>(check: () => Promise<T>): Promise<T> {
    if (this.running >= MAX_CONCURRENT_CHECKS) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await check();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}
