import { parsePlatform, platformId } from '../store/platforms';
import { BuildError } from '../solver/build-error';
import { Lint } from './build-checks';
import { dockerfileError, LineRange } from './dockerfile-error';
import { EnvList } from './env-list';
import { CopyInstruction, ParsedDockerfile, ParsedStage } from './parse-dockerfile';
import { expandWord, ExpandError } from './shell-lex';
import type { RunMount } from './run-mounts';

/**
 * Which stage depends on which, before anything is resolved: the base of every stage (an
 * image, scratch, an earlier stage or a named context), what every `COPY --from` names, the
 * target, the stages the target reaches, and the errors BuildKit reports at this point
 * (unknown target, bad stage index, circular or forward `--from`).
 */

/** A `--opt context:NAME=...` value: an image, or a local directory the client sends. */
export type NamedContext = { kind: 'image'; ref: string } | { kind: 'local'; name: string };

/** Where a stage starts. */
export type StageBase =
  | { kind: 'scratch'; platform?: string }
  | { kind: 'image'; ref: string; platform?: string }
  | { kind: 'stage'; index: number }
  | { kind: 'local'; name: string };

/** What a `COPY --from` reads. */
export type CopyFrom = { kind: 'stage'; index: number } | { kind: 'image'; ref: string } | { kind: 'local'; name: string };

/** A stage with its dependencies worked out. */
export interface PlannedStage {
  parsed: ParsedStage;
  base: StageBase;
  /** `COPY --from` sources, keyed by the instruction */
  copyFrom: Map<CopyInstruction, CopyFrom>;
  /** `RUN --mount=from=...` sources (bind and cache mounts), keyed by the parsed mount */
  mountFrom: Map<RunMount, { from: CopyFrom; at: LineRange }>;
  /** progress name: `build`, `stage-2`, or '' when the Dockerfile has a single state */
  displayName: string;
  /** steps with a progress name: the image FROM, RUN, COPY, ADD and WORKDIR */
  cmdTotal: number;
}

/** The plan for one build. */
export interface StagePlan {
  stages: PlannedStage[];
  target: PlannedStage;
  /** the target and everything it needs, in Dockerfile order */
  reachable: PlannedStage[];
}

const STEP_KINDS = new Set(['RUN', 'COPY', 'ADD', 'WORKDIR']);

/** Parses a named context's value; a malformed one is the client's error. */
export function parseNamedContext(name: string, value: string): NamedContext {
  if (value.startsWith('docker-image://')) return { kind: 'image', ref: value.slice('docker-image://'.length) };
  if (value.startsWith('local:')) return { kind: 'local', name: value.slice('local:'.length) };
  throw new BuildError('invalid-argument', `Cannot use context:${name}=${value}: only docker-image://REF and local:NAME are supported`);
}

/** Plans the build; `globalArgs` are the meta ARGs FROM lines may use. */
export function planStages(
  parsed: ParsedDockerfile, globalArgs: EnvList, target: string | undefined, filename: string,
  named: ReadonlyMap<string, NamedContext> = new Map(), lints: Lint[] = [],
): StagePlan {
  const names = new Map<string, number>();
  const stages: PlannedStage[] = parsed.stages.map((st) => {
    const base = stageBase(st, globalArgs, names, named, parsed.escape, filename, lints);
    if (st.name !== undefined) names.set(st.name, st.index);
    return { parsed: st, base, copyFrom: new Map(), mountFrom: new Map(), displayName: st.name ?? `stage-${st.index}`, cmdTotal: 0 };
  });

  const targetStage = target === undefined || target === ''
    ? stages[stages.length - 1]
    : stages.find((s) => s.parsed.name === target.toLowerCase());
  if (!targetStage) throw new BuildError('not-found', `Cannot build target "${target}": target stage "${target}" could not be found`);

  // BuildKit counts one state per `COPY --from=<image>` too when deciding to name stages.
  let stateCount = stages.length;
  for (const st of stages) {
    for (const ins of st.parsed.instructions) {
      if ((ins.kind !== 'COPY' && ins.kind !== 'ADD') || ins.from === undefined) continue;
      const from = copyFrom(ins, stages, named, filename);
      st.copyFrom.set(ins, from);
      if (from.kind === 'image') stateCount++;
    }
    for (const ins of st.parsed.instructions) {
      if (ins.kind !== 'RUN') continue;
      for (const m of ins.mounts) {
        if (m.from === undefined || (m.type !== 'bind' && m.type !== 'cache')) continue;
        st.mountFrom.set(m, { from: copyFrom({ from: m.from, at: ins.at }, stages, named, filename), at: ins.at });
      }
    }
    const counted = st.parsed.instructions.filter((i) => STEP_KINDS.has(i.kind)).length;
    st.cmdTotal = counted + (st.base.kind === 'image' ? 1 : 0);
  }
  if (stateCount === 1) stages[0].displayName = '';

  checkCycles(stages, filename);
  const reachable = reachableFrom(targetStage, stages);
  for (const st of reachable) {
    for (const [ins, from] of st.copyFrom) {
      if (from.kind === 'stage' && from.index >= st.parsed.index) {
        const current = st.parsed.name ?? `stage-${st.parsed.index}`;
        throw dockerfileError(filename, ins.at, `cannot copy from stage "${ins.from}", it needs to be defined before current stage "${current}"`);
      }
    }
    for (const [m, { from, at }] of st.mountFrom) {
      if (from.kind === 'stage' && from.index >= st.parsed.index) {
        const current = st.parsed.name ?? `stage-${st.parsed.index}`;
        throw dockerfileError(filename, at, `cannot mount from stage "${m.from}", it needs to be defined before current stage "${current}"`);
      }
    }
  }
  return { stages, target: targetStage, reachable };
}

function stageBase(
  st: ParsedStage, globalArgs: EnvList, names: Map<string, number>, named: ReadonlyMap<string, NamedContext>,
  escape: string, filename: string, lints: Lint[],
): StageBase {
  const expand = (word: string): string => {
    for (const m of word.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (globalArgs.get(m[1]) === undefined) lints.push({ rule: 'UndefinedArgInFrom', message: `FROM argument '${m[1]}' is not declared`, at: st.at });
    }
    try {
      return expandWord(word, (k) => globalArgs.get(k), { escape });
    } catch (err) {
      if (err instanceof ExpandError) throw dockerfileError(filename, st.at, err.message);
      throw err;
    }
  };
  const name = expand(st.baseName);
  if (name === '') throw dockerfileError(filename, st.at, `base name (${st.baseName}) should not be blank`);
  let platform: string | undefined;
  if (st.platform !== undefined) {
    const value = expand(st.platform);
    if (value === '') throw dockerfileError(filename, st.at, `empty platform value from expression ${st.platform}`);
    try {
      // normalized as containerd does (linux/arm is linux/arm/v7, linux/arm64/v8 is linux/arm64)
      platform = platformId(parsePlatform(value));
    } catch (err) {
      throw dockerfileError(filename, st.at, `invalid --platform "${value}": ${(err as Error).message}`);
    }
  }
  const context = named.get(name);
  if (context?.kind === 'local') return { kind: 'local', name: context.name };
  if (context?.kind === 'image') return { kind: 'image', ref: context.ref, ...(platform ? { platform } : {}) };
  const earlier = names.get(name.toLowerCase());
  if (earlier !== undefined) return { kind: 'stage', index: earlier };
  if (name === 'scratch') return { kind: 'scratch', ...(platform ? { platform } : {}) };
  return { kind: 'image', ref: name, ...(platform ? { platform } : {}) };
}

function copyFrom(ins: { from?: string; at: LineRange }, stages: PlannedStage[], named: ReadonlyMap<string, NamedContext>, filename: string): CopyFrom {
  const from = ins.from as string;
  if (/[$]/.test(from)) {
    throw dockerfileError(filename, ins.at, 'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround');
  }
  const context = named.get(from);
  if (context) return context.kind === 'local' ? { kind: 'local', name: context.name } : { kind: 'image', ref: context.ref };
  if (/^\d+$/.test(from)) {
    const index = Number(from);
    if (index >= stages.length) throw dockerfileError(filename, ins.at, `invalid stage index ${from}`);
    return { kind: 'stage', index };
  }
  const stage = stages.find((s) => s.parsed.name === from.toLowerCase());
  return stage ? { kind: 'stage', index: stage.parsed.index } : { kind: 'image', ref: from };
}

function dependencies(st: PlannedStage): number[] {
  const deps = st.base.kind === 'stage' ? [st.base.index] : [];
  for (const from of st.copyFrom.values()) if (from.kind === 'stage') deps.push(from.index);
  for (const { from } of st.mountFrom.values()) if (from.kind === 'stage') deps.push(from.index);
  return deps;
}

function checkCycles(stages: PlannedStage[], filename: string): void {
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (i: number): void => {
    if (state.get(i) === 'done') return;
    if (state.get(i) === 'visiting') {
      const st = stages[i];
      throw dockerfileError(filename, st.parsed.at, `circular dependency detected on stage: ${st.parsed.name ?? `stage-${i}`}`);
    }
    state.set(i, 'visiting');
    for (const d of dependencies(stages[i])) visit(d);
    state.set(i, 'done');
  };
  stages.forEach((_, i) => visit(i));
}

function reachableFrom(target: PlannedStage, stages: PlannedStage[]): PlannedStage[] {
  const seen = new Set<number>();
  const visit = (i: number): void => {
    if (seen.has(i)) return;
    seen.add(i);
    for (const d of dependencies(stages[i])) visit(d);
  };
  visit(target.parsed.index);
  return stages.filter((s) => seen.has(s.parsed.index));
}
