import { BuildError } from '../solver/build-error';

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;
const RWXU = 0o700;
const RWXG = 0o070;
const RWXO = 0o007;
const ALL_R = 0o444;
const ALL_W = 0o222;
const ALL_X = 0o111;
const STANDARD = S_ISUID | S_ISGID | RWXU | RWXG | RWXO;

/** One step of a parsed mode, as BSD setmode(3) records it. */
type Step =
  | { op: '+' | '-' | 'X'; bits: number }
  /** copy the u/g/o permissions of the mode being built onto `targets` */
  | { op: 'copy'; from: 'u' | 'g' | 'o'; targets: number; bits: number; clear: boolean; set: boolean };

/**
 * A `--chmod` value: octal, or symbolic as chmod(1) writes it (`u+x`, `go-w`, `a=r,u+w`,
 * `+x`, `g=u`). Applied to each copied entry's own mode, the way BuildKit does through
 * tonistiigi/dchapes-mode (a port of BSD setmode with umask 0):
 * - no `who` means `a`; `X` adds execute only with `+`, and only to directories or to entries
 *   that had any execute bit before the change; `s` and `t` only count for `u`/`g`/no who;
 * - `=` clears the who-bits (all but sticky when no who) before setting.
 */
export class FileMode {
  private constructor(private readonly steps: Step[] | null, private readonly octal: number) {}

  /** Parses an octal number or a symbolic string; invalid-argument when it is neither. */
  static parse(value: number | string): FileMode {
    if (typeof value === 'number') return new FileMode(null, value & 0o7777);
    if (/^[0-7]+$/.test(value)) {
      const n = parseInt(value, 8);
      if (n > 0o7777) throw invalid(value);
      return new FileMode(null, n);
    }
    return new FileMode(parseSymbolic(value), 0);
  }

  /** The permission bits (07777) an entry gets, from its current bits and whether it is a directory. */
  apply(mode: number, isDir: boolean): number {
    if (this.steps === null) return this.octal;
    const original = mode & 0o7777;
    let m = original;
    for (const step of this.steps) {
      if (step.op === '+') m |= step.bits;
      else if (step.op === '-') m &= ~step.bits;
      else if (step.op === 'X') {
        if ((original & ALL_X) !== 0 || isDir) m |= step.bits;
      } else if (step.op === 'copy') {
        const shift = { u: 6, g: 3, o: 0 }[step.from];
        const value = (m >> shift) & 0o7;
        const spread = (v: number): number => ((v << 6) | (v << 3) | v) & step.targets & step.bits;
        if (step.clear) m &= ~spread(step.set ? 0o7 : value);
        if (step.set) m |= spread(value);
      }
    }
    return m & 0o7777;
  }
}

function invalid(value: string): BuildError {
  return new BuildError('invalid-argument', `Cannot parse chmod ${JSON.stringify(value)}: not an octal mode or a symbolic mode like u+x,go-w`);
}

function parseSymbolic(input: string): Step[] {
  const steps: Step[] = [];
  let s = input;
  if (s.length === 0) throw invalid(input);
  for (;;) {
    let who = 0;
    while (s.length > 0 && 'augo'.includes(s[0])) {
      who |= { a: STANDARD, u: S_ISUID | RWXU, g: S_ISGID | RWXG, o: RWXO }[s[0] as 'a' | 'u' | 'g' | 'o'];
      s = s.slice(1);
    }
    // One clause may chain operators: `u+x-w`.
    for (;;) {
      const op = s[0];
      if (op !== '+' && op !== '-' && op !== '=') throw invalid(input);
      s = s.slice(1);
      let clauseWho = who;
      let perm = 0;
      let permX = 0;
      let equalDone = false;
      const add = (o: '+' | '-' | '=', p: number): void => {
        if (o === '=') {
          steps.push({ op: '-', bits: clauseWho !== 0 ? clauseWho : STANDARD });
          steps.push({ op: '+', bits: clauseWho !== 0 ? clauseWho & p : p });
        } else steps.push({ op: o, bits: clauseWho !== 0 ? clauseWho & p : p });
      };
      for (;;) {
        const c = s[0];
        if (c === 'r') perm |= ALL_R;
        else if (c === 'w') perm |= ALL_W;
        else if (c === 'x') perm |= ALL_X;
        else if (c === 'X') {
          if (op === '+') permX = ALL_X;
        } else if (c === 's') {
          if (clauseWho === 0 || (clauseWho & ~RWXO) !== 0) perm |= S_ISUID | S_ISGID;
        } else if (c === 't') {
          if (clauseWho === 0 || (clauseWho & ~RWXO) !== 0) {
            // As BSD setmode: `t` joins the who-bits, even when none were given.
            clauseWho |= S_ISVTX;
            perm |= S_ISVTX;
          }
        } else if (c === 'u' || c === 'g' || c === 'o') {
          if (perm !== 0) add(op, perm);
          perm = 0;
          if (op === '=') equalDone = true;
          if (permX !== 0) steps.push({ op: 'X', bits: clauseWho !== 0 ? clauseWho & permX : permX });
          permX = 0;
          steps.push({
            op: 'copy',
            from: c,
            targets: clauseWho !== 0 ? (clauseWho & 0o400 ? RWXU : 0) | (clauseWho & 0o040 ? RWXG : 0) | (clauseWho & 0o004 ? RWXO : 0) : RWXU | RWXG | RWXO,
            bits: 0o7777,
            clear: op !== '+',
            set: op !== '-',
          });
        } else {
          if (perm !== 0 || (op === '=' && !equalDone)) add(op, perm);
          if (permX !== 0) steps.push({ op: 'X', bits: clauseWho !== 0 ? clauseWho & permX : permX });
          break;
        }
        s = s.slice(1);
      }
      if (s.length === 0) return steps;
      if (s[0] === ',') {
        s = s.slice(1);
        if (s.length === 0) throw invalid(input);
        break;
      }
    }
  }
}
