/**
 * The one error family of buildd. Every layer throws a BuildError (or lets a plain Error be
 * wrapped into one at the daemon boundary); `buildd/` maps `code` to a gRPC status and the
 * CLI prints `message` for a person, never a stack trace.
 */
export type BuildErrorCode =
  | 'invalid-argument' // bad user input: Dockerfile, flags, options
  | 'not-found' // an image, a stage, a file in the context
  | 'failed-precondition' // a step ran and failed (non-zero exit)
  | 'permission-denied'
  | 'unauthenticated'
  | 'unavailable' // a registry or peer could not be reached
  | 'cancelled'
  | 'internal';

/** A range in a source file, 1-based lines as BuildKit reports them. */
export interface SourceRange {
  file: string;
  startLine: number;
  endLine: number;
  column?: number;
}

export class BuildError extends Error {
  readonly code: BuildErrorCode;
  readonly range?: SourceRange;
  /** The step (op digest) the error belongs to, when it comes from running one. */
  readonly vertex?: string;
  /** Exit code of a failed process, when the error is a failed RUN. */
  readonly exitCode?: number;

  constructor(
    code: BuildErrorCode,
    message: string,
    extra: { range?: SourceRange; vertex?: string; exitCode?: number; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'BuildError';
    this.code = code;
    this.range = extra.range;
    this.vertex = extra.vertex;
    this.exitCode = extra.exitCode;
  }
}

/** Wraps anything thrown into a BuildError, keeping one that already is. */
export function toBuildError(err: unknown, fallback: BuildErrorCode = 'internal'): BuildError {
  if (err instanceof BuildError) return err;
  if (err instanceof Error) {
    if (err.name === 'AbortError') return new BuildError('cancelled', 'Cannot continue: the build was cancelled', { cause: err });
    return new BuildError(fallback, err.message, { cause: err });
  }
  return new BuildError(fallback, String(err));
}
