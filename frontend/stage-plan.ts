import { BuildError } from '../solver/build-error';
import { dockerfileError } from './dockerfile-error';
import { EnvList } from './env-list';
import { ParsedDockerfile, ParsedInstruction, ParsedStage } from './parse-dockerfile';
import { expandWord, ExpandError } from './shell-lex';

/**
 * Which stage depends on which, before anything is resolved: the base of every stage (an
 * image, scratch or an earlier stage), what every `COPY --from` names, the target, the
 * stages the target reaches, and the errors BuildKit reports at this point (unknown target,
 * bad stage index, circular or forward `--from`).
 */

/** Where a stage starts. */
export type StageBase = { kind: 'scratch' } | { kind: 'image'; ref: string } | { kind: 'stage'; index: number };

/** What a `COPY --from` reads. */
export type CopyFrom = { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

/** A stage with its dependencies worked out. */
export interface PlannedStage {
  parsed: ParsedStage;
  base: StageBase;
  /** `COPY --from` sources, keyed by the instruction */
  copyFrom: Map<ParsedInstruction, CopyFrom>;
  /** progress name: `build`, `stage-2`, or '' when the Dockerfile has a single state */
  displayName: string;
  /** steps with a progress name: the image FROM, RUN, COPY and WORKDIR */
  cmdTotal: number;
}

/** The plan for one build. */
export interface StagePlan {
  stages: PlannedStage[];
  target: PlannedStage;
  /** the target and everything it needs, in Dockerfile order */
  reachable: PlannedStage[];
}

/** Plans the build; `globalArgs` are the meta ARGs FROM lines may use. */
export function planStages(parsed: ParsedDockerfile, globalArgs: EnvList, target: string | undefined, filename: string): StagePlan {
  const names = new Map<string, number>();
  const stages: PlannedStage[] = parsed.stages.map((st) => {
    const base = stageBase(st, globalArgs, names, parsed.escape, filename);
    if (st.name !== undefined) names.set(st.name, st.index);
    return { parsed: st, base, copyFrom: new Map(), displayName: st.name ?? `stage-${st.index}`, cmdTotal: 0 };
  });

  const targetStage = target === undefined || target === ''
    ? stages[stages.length - 1]
    : stages.find((s) => s.parsed.name === target.toLowerCase());
  if (!targetStage) throw new BuildError('not-found', `Cannot build target "${target}": target stage "${target}" could not be found`);

  // BuildKit counts one state per `COPY --from=<image>` too when deciding to name stages.
  let stateCount = stages.length;
  for (const st of stages) {
    for (const ins of st.parsed.instructions) {
      if (ins.kind !== 'COPY' || ins.from === undefined) continue;
      const from = copyFrom(ins, stages, filename);
      st.copyFrom.set(ins, from);
      if (from.kind === 'image') stateCount++;
    }
    const counted = st.parsed.instructions.filter((i) => i.kind === 'RUN' || i.kind === 'COPY' || i.kind === 'WORKDIR').length;
    st.cmdTotal = counted + (st.base.kind === 'image' ? 1 : 0);
  }
  if (stateCount === 1) stages[0].displayName = '';

  checkCycles(stages, filename);
  const reachable = reachableFrom(targetStage, stages);
  for (const st of reachable) {
    for (const [ins, from] of st.copyFrom) {
      if (from.kind === 'stage' && from.index >= st.parsed.index) {
        const current = st.parsed.name ?? `stage-${st.parsed.index}`;
        throw dockerfileError(filename, ins.at, `cannot copy from stage "${ins.kind === 'COPY' ? ins.from : ''}", it needs to be defined before current stage "${current}"`);
      }
    }
  }
  return { stages, target: targetStage, reachable };
}

function stageBase(st: ParsedStage, globalArgs: EnvList, names: Map<string, number>, escape: string, filename: string): StageBase {
  let name: string;
  try {
    name = expandWord(st.baseName, (k) => globalArgs.get(k), { escape });
  } catch (err) {
    if (err instanceof ExpandError) throw dockerfileError(filename, st.at, err.message);
    throw err;
  }
  if (name === '') throw dockerfileError(filename, st.at, `base name (${st.baseName}) should not be blank`);
  const earlier = names.get(name);
  if (earlier !== undefined) return { kind: 'stage', index: earlier };
  if (name === 'scratch') return { kind: 'scratch' };
  return { kind: 'image', ref: name };
}

function copyFrom(ins: ParsedInstruction & { kind: 'COPY' }, stages: PlannedStage[], filename: string): CopyFrom {
  const from = ins.from as string;
  if (/[$]/.test(from)) {
    throw dockerfileError(filename, ins.at, 'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround');
  }
  if (/^\d+$/.test(from)) {
    const index = Number(from);
    if (index >= stages.length) throw dockerfileError(filename, ins.at, `invalid stage index ${from}`);
    return { kind: 'stage', index };
  }
  const named = stages.find((s) => s.parsed.name === from.toLowerCase());
  return named ? { kind: 'stage', index: named.parsed.index } : { kind: 'image', ref: from };
}

function dependencies(st: PlannedStage): number[] {
  const deps = st.base.kind === 'stage' ? [st.base.index] : [];
  for (const from of st.copyFrom.values()) if (from.kind === 'stage') deps.push(from.index);
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
