import { didYouMean } from './suggest';

/**
 * The `--name=value` flags at the start of an instruction's arguments, as BuildKit's BFlags
 * reads them: for every instruction, up to the first word that is not a flag (or `--`), with
 * quotes removed from values. Each instruction declares which flags it takes and how.
 */

/** How a flag takes its value. */
export type FlagKind = 'string' | 'bool' | 'list';

/** One flag as written, with the column it starts at. */
export interface RawFlag {
  name: string;
  /** null for `--name` without `=` */
  value: string | null;
  text: string;
  column: number;
}

/** Values of the flags an instruction declared: strings, booleans, or lists (repeatable). */
export interface FlagValues {
  strings: Map<string, string>;
  bools: Map<string, boolean>;
  lists: Map<string, string[]>;
}

/** Thrown with the column of the offending flag; the caller adds the line. */
export class FlagError extends Error {
  constructor(message: string, readonly column: number) {
    super(message);
    this.name = 'FlagError';
  }
}

export const INSTRUCTION_FLAGS: Readonly<Record<string, Readonly<Record<string, FlagKind>>>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'list', network: 'string', security: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'list' },
  ADD: { chown: 'string', chmod: 'string', link: 'bool', checksum: 'string', 'keep-git-dir': 'bool', exclude: 'list' },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

/**
 * Splits `rest` into its leading flags and what follows. `offset` is the column (0-based) at
 * which `rest` starts on the instruction's first line, for error columns.
 */
export function extractFlags(rest: string, offset: number): { flags: RawFlag[]; remaining: string } {
  const flags: RawFlag[] = [];
  let pos = 0;
  for (;;) {
    while (pos < rest.length && /\s/.test(rest[pos])) pos++;
    if (!rest.startsWith('--', pos)) break;
    const start = pos;
    let word = '';
    let quote: string | undefined;
    while (pos < rest.length && (quote !== undefined || !/\s/.test(rest[pos]))) {
      const ch = rest[pos++];
      if (quote === undefined && (ch === '"' || ch === "'")) quote = ch;
      else if (ch === quote) quote = undefined;
      else word += ch;
    }
    if (word === '--') break;
    const eq = word.indexOf('=');
    flags.push({
      name: eq < 0 ? word.slice(2) : word.slice(2, eq),
      value: eq < 0 ? null : word.slice(eq + 1),
      text: rest.slice(start, pos),
      column: offset + start + 1,
    });
  }
  return { flags, remaining: rest.slice(pos).trim() };
}

/** Checks the flags against what `keyword` takes; throws FlagError naming the bad one. */
export function readFlags(keyword: string, flags: readonly RawFlag[]): FlagValues {
  const spec = INSTRUCTION_FLAGS[keyword] ?? {};
  const out: FlagValues = { strings: new Map(), bools: new Map(), lists: new Map() };
  const known = Object.keys(spec);
  for (const f of flags) {
    const kind = spec[f.name];
    if (kind === undefined) {
      const hint = known.length === 0 ? ` (${keyword} takes no flags)` : didYouMean(f.name, known, (c) => `--${c}`);
      throw new FlagError(`unknown flag --${f.name} for ${keyword}${hint}`, f.column);
    }
    if (kind === 'bool') {
      if (out.bools.has(f.name)) throw new FlagError(`duplicate flag specified: --${f.name}`, f.column);
      const v = f.value === null ? 'true' : f.value.toLowerCase();
      if (v !== 'true' && v !== 'false') throw new FlagError(`expecting boolean value for flag --${f.name}, not: ${f.value}`, f.column);
      out.bools.set(f.name, v === 'true');
      continue;
    }
    if (f.value === null) throw new FlagError(`missing a value on flag: --${f.name} (write --${f.name}=VALUE)`, f.column);
    if (kind === 'list') {
      out.lists.set(f.name, [...(out.lists.get(f.name) ?? []), f.value]);
      continue;
    }
    if (out.strings.has(f.name)) throw new FlagError(`duplicate flag specified: --${f.name}`, f.column);
    out.strings.set(f.name, f.value);
  }
  return out;
}
