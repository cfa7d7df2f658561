import { BuildError } from '../solver/build-error';
import { dockerfileError, LineRange } from './dockerfile-error';
import { FrontendWarningLike } from './lint-types';

/**
 * BuildKit's build checks: findings that do not stop a build (shell-form CMD, a stage name
 * in capitals, MAINTAINER...) unless the Dockerfile says `# check=error=true`; `# check=
 * skip=Rule1,Rule2` (or `skip=all`) silences rules.
 */

/** One finding; `rule` is BuildKit's rule name. */
export interface Lint {
  rule: string;
  message: string;
  at?: LineRange;
}

/** What `# check=` asked for. */
export interface CheckConfig {
  skip: Set<string>;
  skipAll: boolean;
  error: boolean;
}

export const RULES = [
  'JSONArgsRecommended', 'StageNameCasing', 'FromAsCasing', 'MaintainerDeprecated', 'UndefinedArgInFrom',
  'ConsistentInstructionCasing', 'MultipleInstructionsDisallowed', 'NoEmptyContinuation', 'InvalidDefaultArgInFrom',
  'ReservedStageName', 'DuplicateStageName', 'InvalidBaseImagePlatform',
] as const;

/** Reads `skip=A,B;error=true`; a malformed value is an error on the directive's line. */
export function parseCheckDirective(value: string | undefined, filename: string, at?: LineRange): CheckConfig {
  const config: CheckConfig = { skip: new Set(), skipAll: false, error: false };
  if (value === undefined) return config;
  for (const part of value.split(';').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq).trim();
    const v = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (key === 'skip') {
      for (const rule of v.split(',').map((r) => r.trim()).filter((r) => r !== '')) {
        if (rule === 'all') config.skipAll = true;
        else config.skip.add(rule);
      }
    } else if (key === 'error') {
      if (v !== 'true' && v !== 'false') throw bad(`invalid check directive: error must be true or false, not "${v}"`);
      config.error = v === 'true';
    } else {
      throw bad(`invalid check directive: unknown key "${key}" (skip or error)`);
    }
  }
  return config;

  function bad(message: string): BuildError {
    return at ? dockerfileError(filename, at, message) : new BuildError('invalid-argument', message);
  }
}

/** The warnings to report, after `skip`; with `error=true` the first finding fails the build. */
export function applyChecks(lints: readonly Lint[], config: CheckConfig, filename: string): FrontendWarningLike[] {
  const kept = lints.filter((l) => !config.skipAll && !config.skip.has(l.rule));
  if (config.error && kept.length > 0) {
    const first = kept[0];
    const message = `lint violation found for rules: ${[...new Set(kept.map((l) => l.rule))].join(', ')}: ${first.rule}: ${first.message}`;
    throw first.at ? dockerfileError(filename, first.at, message) : new BuildError('invalid-argument', message);
  }
  return kept.map((l) => ({
    // The location travels in `range`; the client prints it once.
    message: `${l.rule}: ${l.message}`,
    ...(l.at ? { range: { file: filename, startLine: l.at.startLine, endLine: l.at.endLine } } : {}),
  }));
}
