/**
 * An ordered environment: setting a key that exists replaces it in place, a new key goes to
 * the end. This is how BuildKit keeps both a stage's process environment and the image's Env,
 * so the order of `Env` matches the reference builder's.
 */
export class EnvList {
  private readonly entries: Array<[string, string]>;

  constructor(entries: Iterable<[string, string]> = []) {
    this.entries = [...entries].map(([k, v]): [string, string] => [k, v]);
  }

  /** From `KEY=value` strings; a string without `=` is a key with an empty value. */
  static fromStrings(env: readonly string[]): EnvList {
    return new EnvList(env.map((e): [string, string] => {
      const eq = e.indexOf('=');
      return eq < 0 ? [e, ''] : [e.slice(0, eq), e.slice(eq + 1)];
    }));
  }

  get(key: string): string | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }

  set(key: string, value: string): void {
    const found = this.entries.find(([k]) => k === key);
    if (found) found[1] = value;
    else this.entries.push([key, value]);
  }

  clone(): EnvList {
    return new EnvList(this.entries);
  }

  toStrings(): string[] {
    return this.entries.map(([k, v]) => `${k}=${v}`);
  }
}
