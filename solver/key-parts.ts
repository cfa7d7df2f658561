import { createHash } from 'node:crypto';

/**
 * What a step's cache key is made of, kept beside the key so that a miss can say what
 * differs from the last build of the same step. Values are digests, never the values
 * themselves (an env entry may hold a secret a build arg passed).
 */
export interface KeyParts {
  /** the cache keys of the step's inputs, in op order */
  inputs: string[];
  /** RUN: env entry name → sha256 of its value (build args reach a RUN as env entries) */
  env?: Record<string, string>;
  /** RUN: sha256 of the command line */
  command?: string;
  /** COPY/ADD from the context, RUN bind mounts of it: the paths and their content's checksum */
  contents?: Array<{ paths: string[]; checksum: string }>;
  /** sha256 of everything else in the op (flags, destination, user, workdir, ...) */
  rest: string;
}

export function digestOf(value: unknown): string {
  return createHash('sha256').update(typeof value === 'string' ? value : JSON.stringify(value)).digest('hex').slice(0, 32);
}

/** `NAME=value` entries as name → digest of the value. */
export function envDigests(env: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    const i = e.indexOf('=');
    const name = i < 0 ? e : e.slice(0, i);
    out[name] = digestOf(i < 0 ? '' : e.slice(i + 1));
  }
  return out;
}

/**
 * Why `now` missed although `before` (the last build of the same step) was cached: every part
 * that differs, most specific first. `inputNames[i]` names input i (its step's name).
 * Undefined when the parts are the same (the key changed for a reason they do not cover).
 */
export function explainMiss(before: KeyParts, now: KeyParts, inputNames: readonly string[]): string | undefined {
  const reasons: string[] = [];
  for (const [i, c] of now.contents?.entries() ?? []) {
    const old = before.contents?.[i];
    if (old !== undefined && old.checksum !== c.checksum) reasons.push(`the content of ${c.paths.join(', ')} changed`);
  }
  if (now.env !== undefined || before.env !== undefined) {
    const a = before.env ?? {};
    const b = now.env ?? {};
    const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    const changed = names.filter((n) => a[n] !== undefined && b[n] !== undefined && a[n] !== b[n]);
    const added = names.filter((n) => a[n] === undefined);
    const removed = names.filter((n) => b[n] === undefined);
    if (changed.length > 0) reasons.push(`build arg or env ${changed.join(', ')} changed`);
    if (added.length > 0) reasons.push(`build arg or env ${added.join(', ')} added`);
    if (removed.length > 0) reasons.push(`build arg or env ${removed.join(', ')} removed`);
  }
  if (before.command !== now.command) reasons.push('the command changed');
  for (const [i, key] of now.inputs.entries()) {
    if (before.inputs[i] !== undefined && before.inputs[i] !== key) reasons.push(`its input ${inputNames[i] ?? `#${i}`} changed`);
  }
  if (before.inputs.length !== now.inputs.length) reasons.push('its inputs changed');
  if (before.rest !== now.rest) reasons.push("the step's options changed");
  return reasons.length === 0 ? undefined : reasons.join('; ');
}

/**
 * The same step across builds: where the Dockerfile has it (file and line), its kind, and the
 * names of the steps it reads (without their [stage i/n] counters), so an edited command or a
 * changed build arg is compared with what that line was before, while another project's step
 * on the same line is told apart by what it builds on. A step without a place (an internal
 * one) goes by its own name instead. Two projects whose steps match in all of these still
 * share it; the explanation then compares with the other one's last build.
 */
export function stepIdentity(kind: string, name: string, range: { file: string; startLine: number } | undefined, inputNames: readonly string[]): string {
  const bare = (n: string): string => n.replace(/^\[(?:(\S+) )?\d+\/\d+\] /, (_m, stage: string | undefined) => (stage ? `[${stage}] ` : ''));
  const place = range !== undefined ? `${range.file}:${range.startLine}` : bare(name);
  return [`${place} ${kind}`, ...inputNames.map(bare)].join('\0');
}
