import { BuildError, BuildErrorCode, SourceRange } from '../solver/build-error';

/** Where an instruction is in the Dockerfile: 1-based lines, as BuildKit reports them. */
export interface LineRange {
  startLine: number;
  endLine: number;
}

/**
 * A BuildError pointing at Dockerfile lines, its message prefixed `Dockerfile:LINE: ` so that a
 * person reading only the message still finds the line.
 */
export function dockerfileError(filename: string, at: LineRange, message: string, code: BuildErrorCode = 'invalid-argument'): BuildError {
  const range: SourceRange = { file: filename, startLine: at.startLine, endLine: at.endLine };
  return new BuildError(code, `${filename}:${at.startLine}: ${message}`, { range });
}
