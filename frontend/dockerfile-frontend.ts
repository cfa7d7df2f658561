import { BuildError, toBuildError } from '../solver/build-error';
import { Definition } from '../solver/op';
import { ImageConfig } from '../store/image-config';
import type { SourceRange } from '../solver/build-error';
import { emptyImage, imageFromBase } from './base-image';
import { dockerfileError } from './dockerfile-error';
import { EnvList } from './env-list';
import { FsState, OpNode, sourceNode, toDefinition } from './op-graph-builder';
import { parseDockerfile, ParsedDockerfile } from './parse-dockerfile';
import { expandWord, ExpandError } from './shell-lex';
import { deriveStage, DispatchContext, dispatchInstruction, nextPrefix, StageState, startStage } from './stage-dispatch';
import { planStages, StagePlan } from './stage-plan';

/** An image as the resolver found it in a registry. */
export interface ResolvedImage {
  /** normalized ref as given back by the resolver, e.g. localhost:5000/busybox:latest */
  ref: string;
  /** manifest digest */
  digest: string;
  config: ImageConfig;
}

/** Looks an image ref up (the frontend's only I/O); rejects with a BuildError when it cannot. */
export type ImageResolver = (ref: string, signal?: AbortSignal) => Promise<ResolvedImage>;

/** What a Dockerfile build asks of the frontend. */
export interface FrontendInput {
  /** file text */
  dockerfile: string;
  /** for messages, e.g. 'Dockerfile' */
  filename: string;
  /** --opt target= */
  target?: string;
  /** --opt build-arg:K=V */
  buildArgs: Record<string, string>;
  /** sets meta.ignoreCache on every op */
  noCache: boolean;
  /** the local name of the build context, 'context' */
  contextName: string;
  resolveImage: ImageResolver;
  signal?: AbortSignal;
}

/** Something worth telling the user that does not stop the build. */
export interface FrontendWarning {
  message: string;
  range?: SourceRange;
}

/** The graph to solve and the config of the image it produces. */
export interface FrontendResult {
  definition: Definition;
  image: ImageConfig;
  warnings: FrontendWarning[];
}

/** The ARGs BuildKit predefines for the (only) platform buildd builds for. */
const PLATFORM_ARGS: Array<[string, string]> = [
  ['BUILDPLATFORM', 'linux/amd64'], ['BUILDOS', 'linux'], ['BUILDARCH', 'amd64'], ['BUILDVARIANT', ''],
  ['TARGETPLATFORM', 'linux/amd64'], ['TARGETOS', 'linux'], ['TARGETARCH', 'amd64'], ['TARGETVARIANT', ''],
];

/**
 * Turns a Dockerfile into an op graph and an image config, resolving only the images the
 * target needs. Throws BuildError: 'invalid-argument' for the Dockerfile's mistakes (with the
 * line in message and range), 'not-found' for a missing target, or what the resolver threw.
 */
export async function dockerfileToGraph(input: FrontendInput): Promise<FrontendResult> {
  const { filename } = input;
  if (input.dockerfile.length === 0) throw new BuildError('invalid-argument', `Cannot read ${filename}: the Dockerfile cannot be empty`);
  const parsed = parseDockerfile(input.dockerfile, filename);
  if (parsed.stages.length === 0) throw new BuildError('invalid-argument', `Cannot build ${filename}: it contains no stages to build (no FROM)`);

  const globalArgs = metaArgs(parsed, input.buildArgs, filename);
  const plan = planStages(parsed, globalArgs, input.target, filename);
  const images = await resolveImages(plan, input);
  const warnings = unusedBuildArgs(parsed, plan, input.buildArgs);

  let contextNode: OpNode | undefined;
  const states = new Map<number, StageState>();
  const imageNodes = new Map<string, OpNode>();
  const imageNode = (ref: string, name: string, stageLine?: { startLine: number; endLine: number }): OpNode => {
    const resolved = images.get(ref) as ResolvedImage;
    return sourceNode('docker-image://' + resolved.ref, { digest: resolved.digest }, {
      name,
      ...(stageLine ? { range: { file: filename, ...stageLine } } : {}),
      ignoreCache: input.noCache,
    });
  };

  for (const planned of plan.reachable) {
    const ctx: DispatchContext = {
      filename, escape: parsed.escape, noCache: input.noCache, buildArgs: input.buildArgs, globalArgs,
      context: () => contextNode ?? (contextNode = sourceNode('local://' + input.contextName, {}, { name: '[internal] load build context', ignoreCache: input.noCache })),
      copySource: (ins): FsState => {
        const from = planned.copyFrom.get(ins);
        if (!from) return ctx.context();
        if (from.kind === 'stage') return (states.get(from.index) as StageState).fs;
        // A `--from` image is a state of its own, without a step number, as in BuildKit.
        const resolved = images.get(from.ref) as ResolvedImage;
        const key = resolved.ref + '@' + resolved.digest;
        const existing = imageNodes.get(key);
        if (existing) return existing;
        const made = imageNode(from.ref, `FROM ${resolved.ref}`);
        imageNodes.set(key, made);
        return made;
      },
    };
    let st: StageState;
    const base = planned.base;
    if (base.kind === 'stage') {
      st = deriveStage(states.get(base.index) as StageState, planned.displayName, planned.cmdTotal);
    } else if (base.kind === 'scratch') {
      st = startStage(null, emptyImage(), planned.displayName, planned.cmdTotal);
    } else {
      const resolved = images.get(base.ref) as ResolvedImage;
      if ((resolved.config.config?.OnBuild ?? []).length > 0) {
        throw dockerfileError(filename, planned.parsed.at, `ONBUILD triggers of ${resolved.ref} are not supported by buildd yet`);
      }
      st = startStage(null, imageFromBase(resolved.config), planned.displayName, planned.cmdTotal);
      st.fs = imageNode(base.ref, nextPrefix(st) + `FROM ${resolved.ref}`, planned.parsed.at);
    }
    for (const ins of planned.parsed.instructions) dispatchInstruction(st, ins, ctx);
    states.set(planned.parsed.index, st);
  }

  const target = states.get(plan.target.parsed.index) as StageState;
  return { definition: toDefinition(target.fs), image: target.image, warnings };
}

/** Global ARGs: the predefined ones, then those before the first FROM, build args overriding. */
function metaArgs(parsed: ParsedDockerfile, buildArgs: Record<string, string>, filename: string): EnvList {
  const args = new EnvList(PLATFORM_ARGS);
  for (const decl of parsed.globalArgs) {
    for (const arg of decl.args) {
      if (Object.prototype.hasOwnProperty.call(buildArgs, arg.key)) {
        args.set(arg.key, buildArgs[arg.key]);
      } else if (arg.value !== undefined) {
        try {
          args.set(arg.key, expandWord(arg.value, (k) => args.get(k), { escape: parsed.escape }));
        } catch (err) {
          if (err instanceof ExpandError) throw dockerfileError(filename, decl.at, err.message);
          throw err;
        }
      }
    }
  }
  return args;
}

/** Resolves each image the target needs, once per ref, all at the same time. */
async function resolveImages(plan: StagePlan, input: FrontendInput): Promise<Map<string, ResolvedImage>> {
  const wanted = new Map<string, { startLine: number; endLine: number }>();
  for (const st of plan.reachable) {
    if (st.base.kind === 'image' && !wanted.has(st.base.ref)) wanted.set(st.base.ref, st.parsed.at);
    for (const [ins, from] of st.copyFrom) if (from.kind === 'image' && !wanted.has(from.ref)) wanted.set(from.ref, ins.at);
  }
  const entries = await Promise.all([...wanted].map(async ([ref, at]): Promise<[string, ResolvedImage]> => {
    if (input.signal?.aborted) throw new BuildError('cancelled', 'Cannot resolve images: the build was cancelled');
    try {
      return [ref, await input.resolveImage(ref, input.signal)];
    } catch (err) {
      const e = toBuildError(err, 'unavailable');
      throw new BuildError(e.code, `${input.filename}:${at.startLine}: ${ref}: ${e.message}`, {
        range: { file: input.filename, ...at }, cause: err,
      });
    }
  }));
  return new Map(entries);
}

/** BuildKit's "build-args were not consumed" warning, for args no reachable ARG declares. */
function unusedBuildArgs(parsed: ParsedDockerfile, plan: StagePlan, buildArgs: Record<string, string>): FrontendWarning[] {
  const declared = new Set<string>();
  for (const decl of parsed.globalArgs) for (const a of decl.args) declared.add(a.key);
  for (const st of plan.reachable) for (const ins of st.parsed.instructions) if (ins.kind === 'ARG') for (const a of ins.args) declared.add(a.key);
  const unused = Object.keys(buildArgs).filter((k) => !declared.has(k)).sort();
  return unused.length === 0 ? [] : [{ message: `One or more build-args [${unused.join(' ')}] were not consumed` }];
}
