import type { ProgressEvent } from '../buildd/builder';
import type { ProgressState } from './progress-state';

/**
 * Shows a build's progress to a person or a program. Lifecycle: `event` for every progress
 * event in order, then `end` once (after success or failure), then the caller may print the
 * failure summary from `state`.
 */
export interface ProgressRenderer {
  readonly state: ProgressState;
  event(ev: ProgressEvent): void;
  end(): void;
}

/** Where a renderer writes and what time it is (injected so tests are exact). */
export interface RenderTarget {
  write(text: string): void;
  now(): number;
  /** terminal width, for the tty view */
  columns?: number;
}
