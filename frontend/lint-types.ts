import type { SourceRange } from '../solver/build-error';

/** A warning as the frontend returns it (FrontendWarning), kept here to avoid an import cycle. */
export interface FrontendWarningLike {
  message: string;
  range?: SourceRange;
}
