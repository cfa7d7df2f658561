import { BuildError, BuildErrorCode, SourceRange } from '../solver/build-error';

/**
 * Where an instruction is in the Dockerfile: 1-based lines, as BuildKit reports them, with
 * the 1-based column of what is wrong and the instruction's physical lines for quoting.
 */
export interface LineRange {
  startLine: number;
  endLine: number;
  column?: number;
  /** the physical lines startLine..endLine as written */
  source?: readonly string[];
}

/** How many lines of an instruction an error quotes; the rest is elided. */
const QUOTED_LINES = 5;

/**
 * A BuildError pointing at Dockerfile lines: `Dockerfile:LINE:COLUMN: message`, then the
 * instruction's lines quoted, so that a person reading only the message finds the place.
 */
export function dockerfileError(filename: string, at: LineRange, message: string, code: BuildErrorCode = 'invalid-argument'): BuildError {
  const column = at.column ?? 1;
  const range: SourceRange = { file: filename, startLine: at.startLine, endLine: at.endLine, column };
  return new BuildError(code, `${filename}:${at.startLine}:${column}: ${message}${quoteLines(at)}`, { range });
}

/** `\n  3 | COPPY a b` for each line of the instruction. */
export function quoteLines(at: LineRange): string {
  if (!at.source || at.source.length === 0) return '';
  const shown = at.source.slice(0, QUOTED_LINES);
  const width = String(at.startLine + shown.length - 1).length;
  let out = '';
  shown.forEach((line, i) => {
    out += `\n ${String(at.startLine + i).padStart(width, ' ')} | ${line}`;
  });
  if (at.source.length > QUOTED_LINES) out += `\n ${' '.repeat(width)} | ...`;
  return out;
}
