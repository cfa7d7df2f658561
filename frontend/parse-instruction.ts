import { LineRange } from './dockerfile-error';
import { Heredoc, RawInstruction } from './dockerfile-lines';
import { extractFlags, FlagError, FlagValues, readFlags } from './instruction-flags';
import { MountError, parseRunMount, RunMount } from './run-mounts';
import { splitWords } from './split-words';

/**
 * The second pass: one RawInstruction into the typed shape the dispatcher needs, with every
 * flag and argument validated. Nothing is expanded: that depends on the stage's environment.
 */

/** A command as written: shell form (run through the SHELL) or exec (JSON) form. */
export type CommandLine = { form: 'shell'; text: string } | { form: 'exec'; args: string[] };

/** One `KEY=value` (or legacy `KEY value`) of ENV or LABEL, still quoted and unexpanded. */
export interface RawPair { key: string; value: string }

/** One declaration of ARG; `value` is the unexpanded default, absent when there is none. */
export interface RawArg { key: string; value?: string }

interface Base {
  at: LineRange;
  /** `KEYWORD args` with continuation lines joined, for progress names */
  text: string;
}

/** COPY and ADD, flags included. */
export interface CopyInstruction extends Base {
  kind: 'COPY' | 'ADD';
  from?: string;
  chown?: string;
  chmod?: string;
  checksum?: string;
  link: boolean;
  parents: boolean;
  keepGitDir: boolean;
  exclude: string[];
  sources: string[];
  dest: string;
  heredocs: Heredoc[];
}

/** RUN with its flags. */
export interface RunInstruction extends Base {
  kind: 'RUN';
  command: CommandLine;
  heredocs: Heredoc[];
  mounts: RunMount[];
  network?: 'default' | 'none' | 'host';
  security?: 'sandbox' | 'insecure';
}

/** HEALTHCHECK: NONE, or CMD with its options still as written. */
export interface HealthcheckInstruction extends Base {
  kind: 'HEALTHCHECK';
  command?: CommandLine;
  options: Map<string, string>;
}

/** A parsed instruction (FROM is a stage, not an instruction). */
export type ParsedInstruction =
  | (Base & { kind: 'ARG'; args: RawArg[] })
  | (Base & { kind: 'ENV' | 'LABEL'; pairs: RawPair[] })
  | RunInstruction
  | (Base & { kind: 'CMD' | 'ENTRYPOINT'; command: CommandLine })
  | (Base & { kind: 'SHELL'; args: string[] })
  | CopyInstruction
  | (Base & { kind: 'WORKDIR' | 'USER' | 'STOPSIGNAL' | 'MAINTAINER'; value: string })
  | (Base & { kind: 'EXPOSE' | 'VOLUME'; values: string[] })
  | HealthcheckInstruction
  | (Base & { kind: 'ONBUILD'; trigger: string; triggerKeyword: string });

/** Thrown with the column of the problem; parse-dockerfile adds file and line. */
export class InstructionError extends Error {
  constructor(message: string, readonly column = 1) {
    super(message);
    this.name = 'InstructionError';
  }
}

export const INSTRUCTIONS = ['FROM', 'ARG', 'ENV', 'LABEL', 'RUN', 'CMD', 'ENTRYPOINT', 'SHELL', 'COPY', 'ADD', 'WORKDIR', 'USER', 'EXPOSE', 'VOLUME', 'STOPSIGNAL', 'HEALTHCHECK', 'ONBUILD', 'MAINTAINER'];

/** Flags of `raw`, validated; the column is where the flags start on the first line. */
export function instructionFlags(raw: RawInstruction): { flags: FlagValues; remaining: string; flagText: string[] } {
  const first = raw.at.source?.[0] ?? '';
  const offset = Math.max(0, first.indexOf(raw.rest.slice(0, 20)));
  const { flags, remaining } = extractFlags(raw.rest, offset);
  try {
    return { flags: readFlags(raw.keyword, flags), remaining, flagText: flags.map((f) => f.text) };
  } catch (err) {
    if (err instanceof FlagError) throw new InstructionError(err.message, err.column);
    throw err;
  }
}

/** Parses everything but FROM. */
export function parseInstruction(raw: RawInstruction, escape: string): ParsedInstruction {
  const { flags, remaining: content, flagText } = instructionFlags(raw);
  const at = raw.at;
  const text = [raw.keyword, ...flagText, ...(content ? [content] : [])].join(' ');
  const kw = raw.keyword;
  switch (kw) {
    case 'ARG': {
      const words = splitWords(content, escape);
      if (words.length === 0) throw new InstructionError('ARG requires at least one argument');
      const args = words.map((w): RawArg => {
        const eq = w.indexOf('=');
        if (eq === 0) throw new InstructionError(`ARG names can not be blank: "${w}"`);
        return eq < 0 ? { key: w } : { key: w.slice(0, eq), value: w.slice(eq + 1) };
      });
      return { kind: 'ARG', at, text, args };
    }
    case 'ENV':
    case 'LABEL':
      return { kind: kw, at, text, pairs: nameValues(kw, content, escape) };
    case 'RUN': {
      const command = commandLine(content);
      if (command.form === 'exec' ? command.args.length === 0 : command.text === '') throw new InstructionError('RUN requires at least one argument');
      const network = flags.strings.get('network');
      if (network !== undefined && network !== 'default' && network !== 'none' && network !== 'host') {
        throw new InstructionError(`unsupported network mode "${network}" for RUN --network (default, none or host)`);
      }
      const security = flags.strings.get('security');
      if (security !== undefined && security !== 'sandbox' && security !== 'insecure') {
        throw new InstructionError(`unsupported security mode "${security}" for RUN --security (sandbox or insecure)`);
      }
      const mounts = (flags.lists.get('mount') ?? []).map((spec) => {
        try {
          return parseRunMount(spec);
        } catch (err) {
          if (err instanceof MountError) throw new InstructionError(`invalid --mount=${spec}: ${err.message}`);
          throw err;
        }
      });
      if (raw.heredocs.length > 0 && command.form === 'exec') throw new InstructionError('a heredoc needs the shell form of RUN, not a JSON array');
      return { kind: 'RUN', at, text, command, heredocs: raw.heredocs, mounts, network, security };
    }
    case 'CMD':
    case 'ENTRYPOINT':
      return { kind: kw, at, text, command: commandLine(content) };
    case 'SHELL': {
      const command = commandLine(content);
      if (command.form !== 'exec') throw new InstructionError('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]');
      if (command.args.length === 0) throw new InstructionError('SHELL requires at least one argument');
      return { kind: 'SHELL', at, text, args: command.args };
    }
    case 'COPY':
    case 'ADD': {
      const command = commandLine(content);
      const words = command.form === 'exec' ? command.args : splitWords(command.text, escape);
      if (words.length < 2) throw new InstructionError(`${kw} requires at least two arguments, but only one was provided. Destination could not be determined.`);
      return {
        kind: kw, at, text, from: flags.strings.get('from'), chown: flags.strings.get('chown'), chmod: flags.strings.get('chmod'),
        checksum: flags.strings.get('checksum'), link: flags.bools.get('link') ?? false, parents: flags.bools.get('parents') ?? false,
        keepGitDir: flags.bools.get('keep-git-dir') ?? false, exclude: flags.lists.get('exclude') ?? [],
        sources: words.slice(0, -1), dest: words[words.length - 1], heredocs: raw.heredocs,
      };
    }
    case 'WORKDIR':
    case 'USER':
    case 'STOPSIGNAL':
    case 'MAINTAINER':
      if (content === '') throw new InstructionError(`${kw} requires exactly one argument`);
      if (kw === 'STOPSIGNAL' && splitWords(content, escape).length > 1) throw new InstructionError('STOPSIGNAL requires exactly one argument');
      return { kind: kw, at, text, value: content };
    case 'EXPOSE':
    case 'VOLUME': {
      const command = kw === 'VOLUME' ? commandLine(content) : { form: 'shell' as const, text: content };
      const values = command.form === 'exec' ? command.args : splitWords(command.text, escape);
      if (values.length === 0) throw new InstructionError(`${kw} requires at least one argument`);
      if (kw === 'VOLUME' && values.some((v) => v.trim() === '')) throw new InstructionError('VOLUME specified can not be an empty string');
      return { kind: kw, at, text, values };
    }
    case 'HEALTHCHECK':
      return healthcheck(at, text, content, flags);
    case 'ONBUILD': {
      const nested = /^(\S+)/.exec(content)?.[1]?.toUpperCase();
      if (nested === undefined) throw new InstructionError('ONBUILD requires at least one argument');
      if (nested === 'ONBUILD') throw new InstructionError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (nested === 'FROM' || nested === 'MAINTAINER') throw new InstructionError(`${nested} isn't allowed as an ONBUILD trigger`);
      if (!INSTRUCTIONS.includes(nested)) throw new InstructionError(`unknown instruction ${nested} in ONBUILD`);
      // The trigger keeps its heredoc bodies so that the stage that runs it can parse it again.
      const bodies = raw.heredocs.map((h) => `\n${h.content}${h.name}`).join('');
      return { kind: 'ONBUILD', at, text, trigger: content + bodies, triggerKeyword: nested };
    }
    default:
      throw new InstructionError(`unknown instruction ${kw}`);
  }
}

function healthcheck(at: LineRange, text: string, content: string, flags: FlagValues): HealthcheckInstruction {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(content);
  const type = m?.[1].toUpperCase();
  if (type === 'NONE') {
    if ((m?.[2] ?? '') !== '') throw new InstructionError('HEALTHCHECK NONE takes no arguments');
    if (flags.strings.size > 0) throw new InstructionError('HEALTHCHECK NONE takes no flags');
    return { kind: 'HEALTHCHECK', at, text, options: new Map() };
  }
  if (type !== 'CMD') throw new InstructionError(`unknown type "${m?.[1] ?? ''}" in HEALTHCHECK (try CMD)`);
  const command = commandLine((m?.[2] ?? '').trim());
  if (command.form === 'exec' ? command.args.length === 0 : command.text === '') throw new InstructionError('HEALTHCHECK CMD requires a command');
  return { kind: 'HEALTHCHECK', at, text, command, options: flags.strings };
}

/** ENV and LABEL: `k=v k2=v2`, or the legacy `k value with spaces` (one pair). */
function nameValues(kw: string, content: string, escape: string): RawPair[] {
  const words = splitWords(content, escape);
  if (words.length === 0) throw new InstructionError(`${kw} requires at least one argument`);
  if (!words[0].includes('=')) {
    const m = /^(\S+)\s+([\s\S]+)$/.exec(content);
    if (!m) throw new InstructionError(`${kw} must have two arguments`);
    return [{ key: m[1], value: m[2].trim() }];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) throw new InstructionError(`Syntax error - can't find = in "${w}". Must be of the form: name=value`);
    if (eq === 0) throw new InstructionError(`${kw} names can not be blank`);
    return { key: w.slice(0, eq), value: w.slice(eq + 1) };
  });
}

/**
 * BuildKit's rule: text that starts with `[` and parses as a JSON array of strings is the
 * exec form; anything else, even `RUN [ -f x ] && ...`, is shell form. An array with other
 * values is an error.
 */
export function commandLine(content: string): CommandLine {
  if (content.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      return { form: 'shell', text: content };
    }
    if (Array.isArray(parsed)) {
      if (!parsed.every((v): v is string => typeof v === 'string')) throw new InstructionError('when using JSON array syntax, arrays must be comprised of strings only');
      return { form: 'exec', args: parsed as string[] };
    }
  }
  return { form: 'shell', text: content };
}
