import { promises as fsp } from 'node:fs';
import { MAX_SECRET_BYTES } from '../buildd/api/session-limits';
import { BuildError } from '../solver/build-error';
import type { SecretSpec } from './session-flags';

/**
 * The client's secrets (--secret), read only when the daemon asks for one, never cached.
 *
 * Lifecycle: one per build; `check()` before the build starts (files exist and are within
 * BuildKit's 500 KiB, as buildctl checks at start); `get()` per request.
 */
export class SecretStore {
  private readonly byId: Map<string, SecretSpec>;

  constructor(specs: readonly SecretSpec[], private readonly env: NodeJS.ProcessEnv = process.env) {
    this.byId = new Map(specs.map((s) => [s.id, s]));
  }

  async check(): Promise<void> {
    for (const s of this.byId.values()) {
      if (!('file' in s)) continue;
      let size: number;
      try {
        const st = await fsp.stat(s.file);
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
      } catch (err) {
        throw new BuildError('invalid-argument', `Cannot use --secret id=${s.id}: cannot read ${s.file} (${(err as Error).message})`);
      }
      if (size > MAX_SECRET_BYTES) throw new BuildError('invalid-argument', `Cannot use --secret id=${s.id}: ${s.file} is larger than 500 KiB`);
    }
  }

  /** The value, or undefined when there is no such secret (or its variable is unset). */
  async get(id: string): Promise<Buffer | undefined> {
    const s = this.byId.get(id);
    if (!s) return undefined;
    if ('env' in s) {
      const v = this.env[s.env];
      if (v === undefined) return undefined;
      const b = Buffer.from(v, 'utf8');
      if (b.length > MAX_SECRET_BYTES) throw new BuildError('invalid-argument', `Cannot send secret ${id}: $${s.env} is larger than 500 KiB`);
      return b;
    }
    // read at most one byte past the cap: a file that grew meanwhile is refused, not read whole
    const fh = await fsp.open(s.file, 'r');
    try {
      const buf = Buffer.alloc(MAX_SECRET_BYTES + 1);
      let n = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
        if (bytesRead === 0) break;
        n += bytesRead;
        if (n > MAX_SECRET_BYTES) throw new BuildError('invalid-argument', `Cannot send secret ${id}: ${s.file} is larger than 500 KiB`);
      }
      const out = Buffer.from(buf.subarray(0, n));
      buf.fill(0);
      return out;
    } finally {
      await fh.close();
    }
  }
}
