/**
 * An ordered environment: setting a key that exists replaces it in place, a new key goes to
 * the end. This is how BuildKit keeps both a stage's process environment and the image's Env,
 * so the order of `Env` matches the reference builder's.
 */
export class EnvList {
  private readonly entries: Array<[string, string]>;
  /** key → its entry, so that lookups stay O(1) with thousands of ARGs and RUNs (fuzz found it) */
  private readonly index = new Map<string, [string, string]>();

  constructor(entries: Iterable<[string, string]> = []) {
    this.entries = [];
    for (const [k, v] of entries) this.set(k, v);
  }

  /** From `KEY=value` strings; a string without `=` is a key with an empty value. */
  static fromStrings(env: readonly string[]): EnvList {
    return new EnvList(env.map((e): [string, string] => {
      const eq = e.indexOf('=');
      return eq < 0 ? [e, ''] : [e.slice(0, eq), e.slice(eq + 1)];
    }));
  }

  get(key: string): string | undefined {
    return this.index.get(key)?.[1];
  }

  set(key: string, value: string): void {
    const found = this.index.get(key);
    if (found) found[1] = value;
    else {
      const entry: [string, string] = [key, value];
      this.entries.push(entry);
      this.index.set(key, entry);
    }
  }

  clone(): EnvList {
    return new EnvList(this.entries);
  }

  toStrings(): string[] {
    return this.entries.map(([k, v]) => `${k}=${v}`);
  }
}
