import { Lint } from './build-checks';
import { dockerfileError, LineRange } from './dockerfile-error';
import { Directive, RawInstruction, splitDockerfile } from './dockerfile-lines';
import { instructionFlags, InstructionError, INSTRUCTIONS, parseInstruction, ParsedInstruction, RawArg } from './parse-instruction';
import { didYouMean } from './suggest';

export type { CommandLine, CopyInstruction, ParsedInstruction, RawArg, RawPair, RunInstruction } from './parse-instruction';

/**
 * The Dockerfile as typed instructions grouped into stages, with the parser directives and
 * the build-check findings parsing can already see. Every instruction is validated, also in
 * stages the target never uses, as BuildKit does.
 */

/** A FROM line and the instructions up to the next one. */
export interface ParsedStage {
  index: number;
  at: LineRange;
  /** the image, `scratch`, an earlier stage's name or a named context, unexpanded */
  baseName: string;
  /** `AS name`, lowercased as BuildKit does */
  name?: string;
  /** `--platform=`, unexpanded */
  platform?: string;
  instructions: ParsedInstruction[];
}

/** The whole file: directives, global ARGs (before the first FROM), then the stages. */
export interface ParsedDockerfile {
  escape: string;
  syntax?: Directive;
  check?: Directive;
  globalArgs: Array<{ at: LineRange; args: RawArg[] }>;
  stages: ParsedStage[];
  lints: Lint[];
}

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** Parses and validates `text`; throws a BuildError naming FILE:LINE:COLUMN and the line. */
export function parseDockerfile(text: string, filename: string): ParsedDockerfile {
  const lines = splitDockerfile(text, filename);
  const out: ParsedDockerfile = {
    escape: lines.escape, syntax: lines.directives.get('syntax'), check: lines.directives.get('check'),
    globalArgs: [], stages: [], lints: [],
  };
  for (const at of lines.emptyContinuations) out.lints.push({ rule: 'NoEmptyContinuation', message: 'Empty continuation lines will become errors in a future release', at });
  for (const raw of lines.instructions) {
    try {
      parseOne(raw, out);
    } catch (err) {
      if (err instanceof InstructionError) throw dockerfileError(filename, { ...raw.at, column: err.column }, err.message);
      throw err;
    }
  }
  return out;
}

function parseOne(raw: RawInstruction, out: ParsedDockerfile): void {
  const { keyword } = raw;
  if (!INSTRUCTIONS.includes(keyword)) throw new InstructionError(`unknown instruction ${raw.written}${didYouMean(keyword, INSTRUCTIONS)}`);
  if (raw.written !== keyword && raw.written !== keyword.toLowerCase()) {
    out.lints.push({ rule: 'ConsistentInstructionCasing', message: `Command '${raw.written}' should be written in one case (${keyword})`, at: raw.at });
  }
  if (keyword === 'FROM') {
    out.stages.push(parseFrom(raw, out));
    return;
  }
  const parsed = parseInstruction(raw, out.escape);
  const stage = out.stages[out.stages.length - 1];
  if (stage) {
    stage.instructions.push(parsed);
    lint(parsed, stage, out);
  } else if (parsed.kind === 'ARG') {
    out.globalArgs.push({ at: raw.at, args: parsed.args });
  } else {
    throw new InstructionError(`${keyword} is not allowed before the first FROM: no build stage in current context`);
  }
}

function parseFrom(raw: RawInstruction, out: ParsedDockerfile): ParsedStage {
  const { flags, remaining } = instructionFlags(raw);
  const args = remaining.split(/\s+/).filter((a) => a !== '');
  if (args.length !== 1 && (args.length !== 3 || args[1].toLowerCase() !== 'as')) {
    throw new InstructionError('FROM requires either one or three arguments: FROM image [AS name]');
  }
  const stage: ParsedStage = { index: out.stages.length, at: raw.at, baseName: args[0], instructions: [] };
  const platform = flags.strings.get('platform');
  if (platform !== undefined) stage.platform = platform;
  if (args.length === 3) {
    const name = args[2].toLowerCase();
    if (!STAGE_NAME.test(name)) throw new InstructionError(`invalid name for build stage: "${args[2]}", name can't start with a number or contain symbols`);
    if (args[2] !== name) out.lints.push({ rule: 'StageNameCasing', message: `Stage name '${args[2]}' should be lowercase`, at: raw.at });
    const upperFrom = raw.written === raw.written.toUpperCase();
    const upperAs = args[1] === args[1].toUpperCase();
    if (upperFrom !== upperAs) out.lints.push({ rule: 'FromAsCasing', message: `'${args[1]}' and '${raw.written}' keywords' casing do not match`, at: raw.at });
    if (name === 'scratch' || name === 'context') out.lints.push({ rule: 'ReservedStageName', message: `'${name}' is reserved and should not be used as a stage name`, at: raw.at });
    if (out.stages.some((s) => s.name === name)) throw new InstructionError(`duplicate stage name "${name}": each stage needs its own name`);
    stage.name = name;
  }
  return stage;
}

const ONCE = new Set(['CMD', 'ENTRYPOINT', 'HEALTHCHECK']);

function lint(ins: ParsedInstruction, stage: ParsedStage, out: ParsedDockerfile): void {
  if ((ins.kind === 'CMD' || ins.kind === 'ENTRYPOINT') && ins.command.form === 'shell') {
    out.lints.push({ rule: 'JSONArgsRecommended', message: `JSON arguments recommended for ${ins.kind} to prevent unintended behavior related to OS signals`, at: ins.at });
  }
  if (ins.kind === 'MAINTAINER') {
    out.lints.push({ rule: 'MaintainerDeprecated', message: 'Maintainer instruction is deprecated in favor of using label', at: ins.at });
  }
  if (ONCE.has(ins.kind) && stage.instructions.filter((i) => i.kind === ins.kind).length >= 2) {
    out.lints.push({ rule: 'MultipleInstructionsDisallowed', message: `Multiple ${ins.kind} instructions should not be used in the same stage because only the last one will be used`, at: ins.at });
  }
}
