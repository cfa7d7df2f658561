import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';

/** statfs f_type of tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

/** A directory for one step's secret files and ssh sockets, on a tmpfs. */
export interface StepSecretsDir {
  readonly path: string;
  /** Removes the directory and all in it. */
  release(): Promise<void>;
}

/**
 * Where secret values and ssh agent sockets live while a step runs: one directory per step on
 * a tmpfs outside the daemon's root (default: under /dev/shm), bound into the container from
 * there. Why not a tmpfs mounted in the bundle: that would put the values under buildd's root
 * while the step runs, cost a mount per step, leave a mount behind after a kill -9, and need
 * privileges a rootless daemon lacks; /dev/shm is a tmpfs every Linux has, needs no mount, and
 * what a killed daemon left there is swept when the next one starts.
 *
 * Lifecycle: one per worker (so per daemon root: `base` is derived from it, so daemons with
 * other roots never touch each other's); `prepare()` once at start sweeps the leftovers of a
 * previous daemon with the same root; `stepDir()` per step; each step releases its own, and
 * the last one out removes `base`, so an idle daemon leaves nothing in /dev/shm.
 */
export class SecretsDir {
  private ready: Promise<void> | undefined;

  constructor(readonly base: string) {}

  /** The default base for a daemon whose scratch space is `tmpDir`. */
  static forDaemon(tmpDir: string, shm = '/dev/shm'): SecretsDir {
    const tag = createHash('sha256').update(path.resolve(tmpDir)).digest('hex').slice(0, 16);
    return new SecretsDir(path.join(shm, `buildd-${tag}`));
  }

  /** Checks that the parent is a tmpfs and sweeps what a previous daemon left. Idempotent. */
  prepare(): Promise<void> {
    this.ready ??= this.doPrepare();
    return this.ready;
  }

  async stepDir(): Promise<StepSecretsDir> {
    await this.prepare();
    const dir = path.join(this.base, randomBytes(8).toString('hex'));
    // another step's release may remove `base` between the two mkdirs: then make it again
    for (let attempt = 0; ; attempt++) {
      await this.ensureBase();
      try {
        await fsp.mkdir(dir, { mode: 0o700 });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
      }
    }
    return {
      path: dir,
      release: async () => {
        await fsp.rm(dir, { recursive: true, force: true });
        // fails while other steps still have theirs: they remove it
        await fsp.rmdir(this.base).catch(() => undefined);
      },
    };
  }

  /**
   * Makes `base` if it is missing and proves it is this process's own private directory. Its
   * name is predictable and /dev/shm is writable by every user: a directory or symlink another
   * user put there first would let them swap what buildd writes (a spec holding secrets, a
   * file it chowns) for links to anywhere. Ours, in the sticky /dev/shm, nobody else can
   * rename or remove. Someone else's is removed once (root may); if it comes back, refuse.
   */
  private async ensureBase(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.mkdir(this.base, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const st = await fsp.lstat(this.base).catch(() => undefined);
      if (st === undefined) continue; // a release removed it meanwhile: make it again
      const uid = process.geteuid?.() ?? 0;
      if (st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0) return;
      const what = st.isSymbolicLink() ? 'a symlink' : st.isDirectory() ? `a directory of uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}` : 'not a directory';
      if (attempt >= 1) {
        throw new BuildError('failed-precondition', `Cannot keep secrets in memory: ${this.base} is ${what}, not a private directory of buildd's (someone else made it; remove it)`);
      }
      await fsp.rm(this.base, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private async doPrepare(): Promise<void> {
    const parent = path.dirname(this.base);
    let type: number;
    try {
      type = (await fsp.statfs(parent)).type;
    } catch (err) {
      throw new BuildError('failed-precondition', `Cannot keep secrets in memory: ${parent} is not usable (${(err as Error).message})`);
    }
    // a secret must not reach a disk: refuse rather than write it to one
    if (type !== TMPFS_MAGIC) throw new BuildError('failed-precondition', `Cannot keep secrets in memory: ${parent} is not a tmpfs`);
    await fsp.rm(this.base, { recursive: true, force: true });
  }
}
