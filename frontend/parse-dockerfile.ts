import { Arg, DockerfileParser, From, Instruction, ModifiableInstruction, PropertyInstruction } from 'dockerfile-ast';
import { dockerfileError, LineRange } from './dockerfile-error';

/**
 * The Dockerfile as typed instructions grouped into stages. dockerfile-ast does the parsing
 * (continuation lines, comments, the escape directive, flags, key=value pairs); this module
 * checks what buildd supports and gives each instruction the shape the dispatcher needs.
 * Nothing is expanded here: expansion depends on the stage's environment.
 */

/** A command as written: shell form (run through `/bin/sh -c`) or exec (JSON) form. */
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

/** A parsed instruction that buildd supports. */
export type ParsedInstruction =
  | (Base & { kind: 'ARG'; args: RawArg[] })
  | (Base & { kind: 'ENV' | 'LABEL'; pairs: RawPair[] })
  | (Base & { kind: 'RUN' | 'CMD' | 'ENTRYPOINT'; command: CommandLine })
  | (Base & { kind: 'COPY'; from?: string; chown?: string; chmod?: string; sources: string[]; dest: string })
  | (Base & { kind: 'WORKDIR' | 'USER'; value: string })
  | (Base & { kind: 'EXPOSE'; ports: string[] });

/** A FROM line and the instructions up to the next one. */
export interface ParsedStage {
  index: number;
  at: LineRange;
  /** the image, `scratch` or an earlier stage's name, unexpanded */
  baseName: string;
  /** `AS name`, lowercased as BuildKit does */
  name?: string;
  instructions: ParsedInstruction[];
}

/** The whole file: global ARGs (before the first FROM), then the stages. */
export interface ParsedDockerfile {
  escape: string;
  globalArgs: Array<{ at: LineRange; args: RawArg[] }>;
  stages: ParsedStage[];
}

const SUPPORTED = new Set(['FROM', 'ARG', 'ENV', 'LABEL', 'RUN', 'CMD', 'ENTRYPOINT', 'COPY', 'WORKDIR', 'USER', 'EXPOSE']);
const KNOWN_UNSUPPORTED = new Set(['ADD', 'SHELL', 'VOLUME', 'HEALTHCHECK', 'ONBUILD', 'STOPSIGNAL', 'MAINTAINER']);
const ALLOWED_FLAGS: Record<string, readonly string[]> = { COPY: ['from', 'chown', 'chmod'] };
const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** Parses and validates every instruction, including those of stages the target never uses. */
export function parseDockerfile(text: string, filename: string): ParsedDockerfile {
  const df = DockerfileParser.parse(text);
  const out: ParsedDockerfile = { escape: df.getEscapeCharacter(), globalArgs: [], stages: [] };
  for (const ins of df.getInstructions()) {
    const at = lineRange(ins);
    const fail = (message: string): never => {
      throw dockerfileError(filename, at, message);
    };
    const keyword = ins.getKeyword();
    if (!SUPPORTED.has(keyword)) {
      if (KNOWN_UNSUPPORTED.has(keyword)) fail(`${keyword} is not supported by buildd yet`);
      fail(`unknown instruction: ${ins.getInstruction()}`);
    }
    checkFlags(ins, keyword, fail);
    if (keyword === 'FROM') {
      out.stages.push(parseFrom(ins as From, out.stages.length, at, fail));
      continue;
    }
    const parsed = parseInstruction(ins, keyword, at, fail);
    const stage = out.stages[out.stages.length - 1];
    if (stage) stage.instructions.push(parsed);
    else if (parsed.kind === 'ARG') out.globalArgs.push({ at, args: parsed.args });
    else fail('no build stage in current context');
  }
  return out;
}

function lineRange(ins: Instruction): LineRange {
  const r = ins.getRange();
  return { startLine: r.start.line + 1, endLine: r.end.line + 1 };
}

type Fail = (message: string) => never;

function flagsOf(ins: Instruction): Array<{ name: string; value: string | null; text: string }> {
  if (ins instanceof ModifiableInstruction) {
    return ins.getFlags().map((f) => ({ name: f.getName(), value: f.getValue(), text: f.toString() }));
  }
  // dockerfile-ast only reads flags on some instructions; BuildKit reads them on all.
  const flags: Array<{ name: string; value: string | null; text: string }> = [];
  for (const arg of ins.getArguments()) {
    const v = arg.getValue();
    if (!v.startsWith('--')) break;
    const eq = v.indexOf('=');
    flags.push({ name: eq < 0 ? v.slice(2) : v.slice(2, eq), value: eq < 0 ? null : v.slice(eq + 1), text: v });
  }
  return flags;
}

function checkFlags(ins: Instruction, keyword: string, fail: Fail): void {
  const allowed = ALLOWED_FLAGS[keyword] ?? [];
  const seen = new Set<string>();
  for (const flag of flagsOf(ins)) {
    if (!allowed.includes(flag.name)) fail(`unknown flag: --${flag.name}`);
    if (flag.value === null) fail(`missing a value on flag: --${flag.name}`);
    if (seen.has(flag.name)) fail(`duplicate flag specified: --${flag.name}`);
    seen.add(flag.name);
  }
}

function flagValue(ins: Instruction, name: string): string | undefined {
  const flag = flagsOf(ins).find((f) => f.name === name);
  return flag?.value ?? undefined;
}

function displayText(ins: Instruction): string {
  const parts = [ins.getKeyword(), ...flagsOf(ins).map((f) => f.text)];
  const content = ins.getArgumentsContent();
  if (content) parts.push(content.trim());
  return parts.join(' ');
}

function parseFrom(ins: From, index: number, at: LineRange, fail: Fail): ParsedStage {
  const args = ins.getArguments().map((a) => a.getValue());
  if (args.length === 0) fail('FROM requires either one or three arguments');
  if (args.length !== 1 && (args.length !== 3 || args[1].toLowerCase() !== 'as')) {
    fail('FROM requires either one or three arguments');
  }
  const stage: ParsedStage = { index, at, baseName: args[0], instructions: [] };
  if (args.length === 3) {
    const name = args[2].toLowerCase();
    if (!STAGE_NAME.test(name)) fail(`invalid name for build stage: "${args[2]}", name can't start with a number or contain symbols`);
    stage.name = name;
  }
  return stage;
}

function parseInstruction(ins: Instruction, keyword: string, at: LineRange, fail: Fail): ParsedInstruction {
  const text = displayText(ins);
  const content = (ins.getArgumentsContent() ?? '').trim();
  switch (keyword) {
    case 'ARG': {
      const args = (ins as Arg).getProperties().map((p) => {
        const value = p.getUnescapedValue();
        return value === null && p.getAssignmentOperator() === null ? { key: p.getName() } : { key: p.getName(), value: value ?? '' };
      });
      if (args.length === 0) fail('ARG requires at least one argument');
      return { kind: 'ARG', at, text, args };
    }
    case 'ENV':
    case 'LABEL': {
      const pairs = (ins as PropertyInstruction).getProperties().map((p) => {
        const value = p.getUnescapedValue();
        if (value === null && p.getAssignmentOperator() === null) fail(`${keyword} must have two arguments`);
        return { key: p.getName(), value: value ?? '' };
      });
      if (pairs.length === 0) fail(`${keyword} requires at least one argument`);
      return { kind: keyword, at, text, pairs };
    }
    case 'RUN':
    case 'CMD':
    case 'ENTRYPOINT': {
      const command = commandLine(content, fail);
      if (keyword === 'RUN' && (command.form === 'exec' ? command.args.length === 0 : command.text === '')) {
        fail('RUN requires at least one argument');
      }
      return { kind: keyword, at, text, command };
    }
    case 'COPY': {
      const command = commandLine(content, fail);
      const words = command.form === 'exec' ? command.args : command.text.split(/\s+/).filter((w) => w !== '');
      if (words.length < 2) fail('COPY requires at least two arguments, but only one was provided. Destination could not be determined.');
      return {
        kind: 'COPY', at, text,
        from: flagValue(ins, 'from'), chown: flagValue(ins, 'chown'), chmod: flagValue(ins, 'chmod'),
        sources: words.slice(0, -1), dest: words[words.length - 1],
      };
    }
    case 'WORKDIR':
    case 'USER':
      if (content === '') fail(`${keyword} requires exactly one argument`);
      return { kind: keyword, at, text, value: content };
    default: {
      const ports = content.split(/\s+/).filter((w) => w !== '');
      if (ports.length === 0) fail('EXPOSE requires at least one argument');
      return { kind: 'EXPOSE', at, text, ports };
    }
  }
}

/**
 * BuildKit's rule: text that starts with `[` and parses as a JSON array is the exec form and
 * must hold only strings; anything else, even `RUN [ -f x ] && ...`, is shell form.
 * dockerfile-ast's own bracket detection is not used: it misses arrays without strings
 * (`[1, 2]`), which BuildKit rejects, and does not decode escapes such as `\u0041`.
 */
function commandLine(content: string, fail: Fail): CommandLine {
  if (content.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      return { form: 'shell', text: content };
    }
    if (Array.isArray(parsed)) {
      if (!parsed.every((v): v is string => typeof v === 'string')) fail('when using JSON array syntax, arrays must be comprised of strings only');
      return { form: 'exec', args: parsed as string[] };
    }
  }
  return { form: 'shell', text: content };
}
