/**
 * Whether a progress vertex is a Dockerfile instruction (`[2/3] RUN ...`, `[build 1/4] FROM
 * ...`): what cache hit counts, step durations and a build's step tally count. Internal
 * vertices (context, metadata, export) are not steps.
 */
export function isStepVertex(name: string): boolean {
  return STEP_NAME.test(name);
}

const STEP_NAME = /^\[[^\]]*\b\d+\/\d+\] /;
