/**
 * Dockerfile word expansion, as BuildKit's shell lexer does it for ENV, LABEL, COPY, WORKDIR,
 * USER, EXPOSE, ARG defaults and FROM: quotes are removed (unless kept), the escape character
 * protects the next character, and `$v ${v} ${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?w} ${v?w}` are
 * replaced from the environment, as are the pattern forms `${v#p} ${v##p} ${v%p} ${v%%p}
 * ${v/p/r} ${v//p/r}` (p a glob: `*`, `?`, `[...]`). RUN, CMD and ENTRYPOINT are left to the
 * shell.
 */

/** Looks a variable up; undefined means unset (which differs from set to ''). */
export type EnvLookup = (name: string) => string | undefined;

/** Switches that select one of the lexer's modes. */
export interface ExpandOptions {
  /** the Dockerfile's escape character, `\` unless `# escape=` says otherwise */
  escape?: string;
  /** keep quotes and escape characters in the output (progress names of RUN steps) */
  rawQuotes?: boolean;
  /** leave a reference to an unset variable as written instead of making it '' */
  skipUnset?: boolean;
}

/** Thrown for malformed words; the caller adds the Dockerfile line. */
export class ExpandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpandError';
  }
}

/** Expands one word; whitespace is kept as it is. */
export function expandWord(word: string, lookup: EnvLookup, options: ExpandOptions = {}): string {
  return new Lexer(word, lookup, options).run();
}

/** Expands and then splits on unquoted whitespace, as EXPOSE wants. */
export function expandWords(text: string, lookup: EnvLookup, options: ExpandOptions = {}): string[] {
  return new Lexer(text, lookup, options).runWords();
}

const NAME_START = /[A-Za-z_]/;
const NAME_PART = /[A-Za-z0-9_]/;

/** An expanded word longer than this is refused: doubling `ARG X=${X}${X}` would exhaust memory. */
const MAX_EXPANDED = 1024 * 1024;

/** Nesting of `${...}` beyond this is refused: a recursion without bound would overflow the stack. */
const MAX_NESTING = 100;

class Lexer {
  private pos = 0;
  private nesting = 0;
  private readonly escape: string;

  constructor(private readonly src: string, private readonly lookup: EnvLookup, private readonly opt: ExpandOptions) {
    this.escape = opt.escape ?? '\\';
  }

  run(): string {
    return this.readUntil(undefined);
  }

  runWords(): string[] {
    const words: string[] = [];
    let current = '';
    let inWord = false;
    while (this.pos < this.src.length) {
      const ch = this.src[this.pos];
      if (/\s/.test(ch)) {
        this.pos++;
        if (inWord) words.push(current);
        current = '';
        inWord = false;
        continue;
      }
      inWord = true;
      current += this.readOne();
    }
    if (inWord) words.push(current);
    return words;
  }

  /** Reads up to (not including) `stop` at the top level, or to the end. */
  private readUntil(stop: string | undefined): string {
    let out = '';
    while (this.pos < this.src.length && this.src[this.pos] !== stop) {
      out += this.readOne();
      if (out.length > MAX_EXPANDED) throw new ExpandError(`expanded value longer than ${MAX_EXPANDED} characters`);
    }
    return out;
  }

  /** Reads one lexical unit: a quoted string, an escape, a `$` reference or a plain char. */
  private readOne(): string {
    const ch = this.src[this.pos];
    if (ch === "'") return this.singleQuoted();
    if (ch === '"') return this.doubleQuoted();
    if (ch === '$') return this.dollar();
    if (ch === this.escape) {
      this.pos++;
      if (this.pos >= this.src.length) return this.opt.rawQuotes ? ch : '';
      // Consuming the escaped character here is also what keeps `\}` from ending `${v:-...}`.
      const next = this.src[this.pos++];
      return this.opt.rawQuotes ? ch + next : next;
    }
    this.pos++;
    return ch;
  }

  private singleQuoted(): string {
    const start = this.pos++;
    const end = this.src.indexOf("'", this.pos);
    if (end < 0) throw new ExpandError('unexpected end of statement while looking for matching single-quote');
    this.pos = end + 1;
    const body = this.src.slice(start + 1, end);
    return this.opt.rawQuotes ? `'${body}'` : body;
  }

  private doubleQuoted(): string {
    this.pos++;
    let out = '';
    for (;;) {
      if (this.pos >= this.src.length) throw new ExpandError('unexpected end of statement while looking for matching double-quote');
      const ch = this.src[this.pos];
      if (ch === '"') {
        this.pos++;
        return this.opt.rawQuotes ? `"${out}"` : out;
      }
      if (ch === '$') {
        out += this.dollar();
        if (out.length > MAX_EXPANDED) throw new ExpandError(`expanded value longer than ${MAX_EXPANDED} characters`);
        continue;
      }
      if (ch === this.escape && this.pos + 1 < this.src.length) {
        const next = this.src[this.pos + 1];
        // In double quotes only a quote, `$` and the escape character itself are escapable.
        if (next === '"' || next === '$' || next === this.escape) {
          this.pos += 2;
          out += this.opt.rawQuotes ? ch + next : next;
          continue;
        }
      }
      out += ch;
      this.pos++;
    }
  }

  private dollar(): string {
    const start = this.pos++;
    const ch = this.src[this.pos];
    if (ch === '{') return this.braced(start);
    const name = this.readName();
    if (name === '') return '$';
    const value = this.lookup(name);
    if (value === undefined) return this.opt.skipUnset ? this.src.slice(start, this.pos) : '';
    return value;
  }

  private readName(): string {
    const first = this.src[this.pos];
    if (first === undefined) return '';
    // `$1` is one positional character, as in a shell.
    if (/[0-9]/.test(first)) {
      this.pos++;
      return first;
    }
    if (!NAME_START.test(first)) return '';
    let name = '';
    while (this.pos < this.src.length && NAME_PART.test(this.src[this.pos])) name += this.src[this.pos++];
    return name;
  }

  private braced(start: number): string {
    if (++this.nesting > MAX_NESTING) throw new ExpandError(`substitution nested more than ${MAX_NESTING} levels deep: ${this.src.slice(start, start + 40)}...`);
    try {
      return this.bracedBody(start);
    } finally {
      this.nesting--;
    }
  }

  private bracedBody(start: number): string {
    this.pos++;
    const name = this.readName();
    if (name === '') throw new ExpandError(`bad substitution: ${this.src.slice(start)}`);
    const value = this.lookup(name);
    let ch = this.src[this.pos];
    if (ch === '}') {
      this.pos++;
      if (value === undefined) return this.opt.skipUnset ? this.src.slice(start, this.pos) : '';
      return value;
    }
    let colon = false;
    if (ch === ':') {
      colon = true;
      this.pos++;
      ch = this.src[this.pos];
    }
    if (!colon && (ch === '#' || ch === '%' || ch === '/')) return this.pattern(start, value, ch);
    if (ch !== '-' && ch !== '+' && ch !== '?') {
      throw new ExpandError(`unsupported modifier (${ch ?? 'end of word'}) in substitution: ${this.src.slice(start)}`);
    }
    this.pos++;
    const word = this.readUntil('}');
    if (this.src[this.pos] !== '}') throw new ExpandError(`missing '}' in substitution: ${this.src.slice(start)}`);
    this.pos++;
    if (value === undefined && this.opt.skipUnset) return this.src.slice(start, this.pos);
    const isSet = colon ? value !== undefined && value !== '' : value !== undefined;
    switch (ch) {
      case '-':
        return isSet ? (value as string) : word;
      case '+':
        return isSet ? word : '';
      default:
        if (!isSet) throw new ExpandError(`${name}: ${word === '' ? 'is not allowed to be unset' : word}`);
        return value as string;
    }
  }
  /** `${v#p}` and friends: remove a prefix/suffix matching a glob, or replace matches. */
  private pattern(start: number, value: string | undefined, op: string): string {
    this.pos++;
    let double = false;
    if (this.src[this.pos] === op) {
      double = true;
      this.pos++;
    }
    let pat: string;
    let replacement = '';
    if (op === '/') {
      pat = this.readUntilEither('/', '}');
      if (this.src[this.pos] === '/') {
        this.pos++;
        replacement = this.readUntil('}');
      }
    } else {
      pat = this.readUntil('}');
    }
    if (this.src[this.pos] !== '}') throw new ExpandError(`missing '}' in substitution: ${this.src.slice(start)}`);
    this.pos++;
    if (value === undefined && this.opt.skipUnset) return this.src.slice(start, this.pos);
    const v = value ?? '';
    const glob = globToRegExpSource(pat);
    if (op === '/') {
      if (pat === '') return v;
      return v.replace(new RegExp(glob, double ? 'gs' : 's'), () => replacement);
    }
    if (op === '#') {
      // Shortest or longest prefix that matches the whole pattern.
      const lengths = [...Array(v.length + 1).keys()];
      if (double) lengths.reverse();
      const re = new RegExp(`^(?:${glob})$`, 's');
      for (const n of lengths) if (re.test(v.slice(0, n))) return v.slice(n);
      return v;
    }
    const starts = [...Array(v.length + 1).keys()].reverse();
    if (double) starts.reverse();
    const re = new RegExp(`^(?:${glob})$`, 's');
    for (const n of starts) if (re.test(v.slice(n))) return v.slice(0, n);
    return v;
  }

  private readUntilEither(a: string, b: string): string {
    let out = '';
    while (this.pos < this.src.length && this.src[this.pos] !== a && this.src[this.pos] !== b) out += this.readOne();
    return out;
  }
}

/** A shell glob (`*`, `?`, `[...]`, `\\x`) as the source of an equivalent regular expression. */
export function globToRegExpSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i];
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else if (ch === '\\' && i + 1 < glob.length) out += escapeRe(glob[++i]);
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      out += '[' + body.replace(/\\/g, '\\\\') + ']';
      i = end;
    } else out += escapeRe(ch);
  }
  return out;
}

function escapeRe(ch: string): string {
  return ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
