import { dockerfileError, LineRange } from './dockerfile-error';
import { splitDockerfile } from './dockerfile-lines';
import { InstructionError, parseInstruction, ParsedInstruction } from './parse-instruction';

/**
 * ONBUILD triggers of a stage's base (the image config's OnBuild, or an earlier stage that
 * declared ONBUILD): parsed again as instructions, they run first in the stage that uses the
 * base. Errors point at that stage's FROM line, which is where the user can act.
 */
export function parseTriggers(triggers: readonly string[], escape: string, filename: string, from: LineRange): ParsedInstruction[] {
  const out: ParsedInstruction[] = [];
  for (const trigger of triggers) {
    const fail = (message: string): never => {
      throw dockerfileError(filename, from, `ONBUILD trigger "${trigger.split('\n')[0]}" of the base image: ${message}`);
    };
    let lines;
    try {
      lines = splitDockerfile(trigger, filename);
    } catch (err) {
      return fail((err as Error).message.split('\n')[0]);
    }
    for (const raw of lines.instructions) {
      if (raw.keyword === 'ONBUILD' || raw.keyword === 'FROM' || raw.keyword === 'MAINTAINER') fail(`${raw.keyword} isn't allowed as an ONBUILD trigger`);
      try {
        out.push({ ...parseInstruction({ ...raw, at: from }, escape), at: from });
      } catch (err) {
        if (err instanceof InstructionError) fail(err.message);
        throw err;
      }
    }
  }
  return out;
}
