import { normalizePlatform, parsePlatform, platformId, platformMatcher } from '../store/platforms';
import { BuildError, toBuildError } from '../solver/build-error';
import { Definition } from '../solver/op';
import { ImageConfig } from '../store/image-config';
import type { SourceRange } from '../solver/build-error';
import { emptyImage, imageFromBase } from './base-image';
import { metaArgs, unusedBuildArgs } from './build-args';
import { applyChecks, Lint, parseCheckDirective } from './build-checks';
import { LineRange } from './dockerfile-error';
import { FsState, OpNode, sourceNode, toDefinition } from './op-graph-builder';
import { parseTriggers } from './onbuild-triggers';
import { parseDockerfile } from './parse-dockerfile';
import { deriveStage, DispatchContext, dispatchInstruction, nextPrefix, StageState, startStage } from './stage-dispatch';
import { CopyFrom, NamedContext, parseNamedContext, planStages, PlannedStage, StagePlan } from './stage-plan';

/** An image as the resolver found it in a registry. */
export interface ResolvedImage {
  /** normalized ref as given back by the resolver, e.g. localhost:5000/busybox:latest */
  ref: string;
  /** manifest digest */
  digest: string;
  config: ImageConfig;
}

/** How to resolve: for which platform (`os/arch[/variant]`, default linux/amd64), cancellable. */
export interface ResolveOptions {
  platform?: string;
  signal?: AbortSignal;
}

/** Looks an image ref up (the frontend's only I/O); rejects with a BuildError when it cannot. */
export type ImageResolver = (ref: string, opts: ResolveOptions) => Promise<ResolvedImage>;

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
  /** --opt context:NAME=VALUE, raw values: `docker-image://REF` or `local:NAME` */
  namedContexts?: Record<string, string>;
  /**
   * the target platform, one of `--opt platform=`'s (`os/arch[/variant]`); the build
   * platform when absent
   */
  platform?: string;
  /** the platform the worker runs natively (BUILDPLATFORM); linux/amd64 when absent */
  buildPlatform?: string;
  /** one of several targets: step names start with their platform, as BuildKit's */
  multiPlatform?: boolean;
  /** sets meta.ignoreCache on every op */
  noCache: boolean;
  /** --opt force-network-mode (see parseForceNetworkMode): every RUN's network unless it names none or host */
  forceNetworkMode?: 'none' | 'sandbox' | 'host';
  /** --opt hostname (or build-arg:BUILDKIT_SANDBOX_HOSTNAME): every RUN's hostname */
  hostname?: string;
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
  /** how many entries at the start of image.history came with the base image */
  baseHistory: number;
  /** SOURCE_DATE_EPOCH as BuildKit reads it: the build arg, else the Dockerfile's global ARG default */
  sourceDateEpoch?: string;
  warnings: FrontendWarning[];
}

const DEFAULT_PLATFORM = 'linux/amd64';

/**
 * Turns a Dockerfile into an op graph and an image config, resolving only the images the
 * target needs. Throws BuildError: 'invalid-argument' for the Dockerfile's mistakes (with
 * FILE:LINE:COLUMN and the quoted line), 'not-found' for a missing target, or what the
 * resolver threw.
 */
export async function dockerfileToGraph(input: FrontendInput): Promise<FrontendResult> {
  const { filename } = input;
  if (input.dockerfile.trim().length === 0) throw new BuildError('invalid-argument', `Cannot read ${filename}: the Dockerfile cannot be empty`);
  const parsed = parseDockerfile(input.dockerfile, filename);
  const checks = parseCheckDirective(parsed.check?.value, filename, parsed.check?.at);
  if (parsed.stages.length === 0) throw new BuildError('invalid-argument', `Cannot build ${filename}: it contains no stages to build (no FROM)`);
  const lints: Lint[] = [...parsed.lints];
  const syntaxWarning = syntaxDirectiveWarning(parsed.syntax?.value, filename, parsed.syntax?.at);

  const buildPlatform = input.buildPlatform ?? DEFAULT_PLATFORM;
  const targetPlatform = input.platform ? platformId(parsePlatform(input.platform)) : buildPlatform;
  const named = new Map<string, NamedContext>();
  for (const [k, v] of Object.entries(input.namedContexts ?? {})) named.set(k, parseNamedContext(k, v));
  const globalArgs = metaArgs(parsed, input.buildArgs, filename, targetPlatform, buildPlatform);
  const plan = planStages(parsed, globalArgs, input.target, filename, named, lints);
  const images = await resolveImages(plan, input, targetPlatform);
  const imageOf = (ref: string, platform?: string): ResolvedImage => images.get(imageKey(ref, platform ?? targetPlatform)) as ResolvedImage;
  // As BuildKit: a base of a single image of another platform is taken, with a warning
  for (const st of plan.reachable) {
    if (st.base.kind !== 'image') continue;
    const wanted = st.base.platform ?? targetPlatform;
    const { os, architecture, variant } = imageOf(st.base.ref, st.base.platform).config;
    const actual = { os, architecture, ...(variant ? { variant } : {}) };
    if (!platformMatcher(parsePlatform(wanted)).match(actual)) {
      lints.push({ rule: 'InvalidBaseImagePlatform', message: `Base image ${st.base.ref} was pulled with platform "${platformId(actual)}", expected "${wanted}" for current build`, at: st.parsed.at });
    }
  }

  const sources = new Map<string, OpNode>();
  const sourceOnce = (identifier: string, attrs: Record<string, string>, name: string, at?: LineRange): OpNode => {
    const key = identifier + JSON.stringify(attrs);
    const existing = sources.get(key);
    if (existing) return existing;
    const made = sourceNode(identifier, attrs, { name, ...(at ? { range: { file: filename, startLine: at.startLine, endLine: at.endLine } } : {}), ignoreCache: input.noCache });
    sources.set(key, made);
    return made;
  };
  const imageNode = (ref: string, platform: string | undefined, name: string, at?: LineRange): OpNode => {
    const resolved = imageOf(ref, platform);
    const attrs: Record<string, string> = { digest: resolved.digest };
    if (platform !== undefined && platform !== DEFAULT_PLATFORM) attrs.platform = platform;
    // Each FROM is its own node so that its step name is its stage's; equal digests merge later.
    if (at) return sourceNode('docker-image://' + resolved.ref, attrs, { name, range: { file: filename, startLine: at.startLine, endLine: at.endLine }, ignoreCache: input.noCache });
    return sourceOnce('docker-image://' + resolved.ref, attrs, name);
  };
  const localNode = (name: string): OpNode => sourceOnce('local://' + name, {}, name === input.contextName ? '[internal] load build context' : `[context ${name}] load from client`);

  const states = new Map<number, StageState>();
  const fromState = (from: CopyFrom | undefined): FsState => {
    if (!from) return localNode(input.contextName);
    if (from.kind === 'stage') return (states.get(from.index) as StageState).fs;
    if (from.kind === 'local') return localNode(from.name);
    // A `--from` image is a state of its own, without a step number, as in BuildKit.
    return imageNode(from.ref, undefined, `FROM ${imageOf(from.ref).ref}`);
  };
  for (const planned of plan.reachable) {
    const ctx: DispatchContext = {
      filename, escape: parsed.escape, noCache: input.noCache, buildArgs: input.buildArgs, globalArgs, lints,
      forceNetworkMode: input.forceNetworkMode,
      hostname: input.hostname,
      context: () => localNode(input.contextName),
      copySource: (ins): FsState => fromState(planned.copyFrom.get(ins)),
      mountSource: (m): FsState => fromState(planned.mountFrom.get(m)?.from),
      source: (identifier, attrs, name) => sourceOnce(identifier, attrs, name),
    };
    const st = startOf(planned, states, imageOf, imageNode, localNode, targetPlatform, input.multiPlatform === true);
    const onbuild = st.image.config?.OnBuild ?? [];
    if (st.image.config) delete st.image.config.OnBuild;
    const triggers = parseTriggers(onbuild, parsed.escape, filename, planned.parsed.at);
    st.cmdTotal += triggers.filter((t) => t.kind === 'RUN' || t.kind === 'COPY' || t.kind === 'ADD' || t.kind === 'WORKDIR').length;
    for (const ins of [...triggers, ...planned.parsed.instructions]) dispatchInstruction(st, ins, ctx);
    states.set(planned.parsed.index, st);
  }

  const warnings: FrontendWarning[] = [...(syntaxWarning ? [syntaxWarning] : []), ...applyChecks(lints, checks, filename), ...unusedBuildArgs(parsed, plan, input.buildArgs)];
  const target = states.get(plan.target.parsed.index) as StageState;
  // As BuildKit: with a platform asked for, the image is the target's, whatever platform its
  // last stage ran as (FROM --platform=$BUILDPLATFORM); its variant is kept from the base
  // only when the target has none and the same os and architecture.
  if (input.platform) targetImagePlatform(target.image, targetPlatform);
  const sourceDateEpoch = input.buildArgs.SOURCE_DATE_EPOCH ?? globalArgs.get('SOURCE_DATE_EPOCH');
  return { definition: toDefinition(target.fs), image: target.image, baseHistory: target.baseHistory, warnings, ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }) };
}

function startOf(
  planned: PlannedStage, states: Map<number, StageState>, imageOf: (ref: string, platform?: string) => ResolvedImage,
  imageNode: (ref: string, platform: string | undefined, name: string, at?: LineRange) => OpNode, localNode: (name: string) => OpNode, targetPlatform: string,
  multiPlatform: boolean,
): StageState {
  const base = planned.base;
  if (base.kind === 'stage') return deriveStage(states.get(base.index) as StageState, planned.displayName, planned.cmdTotal);
  const target = multiPlatform ? { targetPlatform } : {};
  if (base.kind === 'scratch' || base.kind === 'local') {
    const platform = (base.kind === 'scratch' ? base.platform : undefined) ?? targetPlatform;
    const st = { ...startStage(null, withPlatform(emptyImage(), platform), planned.displayName, planned.cmdTotal, platform), ...target };
    if (base.kind === 'local') st.fs = localNode(base.name);
    return st;
  }
  const resolved = imageOf(base.ref, base.platform);
  const platform = base.platform ?? targetPlatform;
  const st: StageState = { ...startStage(null, withPlatform(imageFromBase(resolved.config), platform), planned.displayName, planned.cmdTotal, platform), ...target };
  st.fs = imageNode(base.ref, base.platform, nextPrefix(st) + `FROM ${resolved.ref}`, planned.parsed.at);
  return st;
}

function withPlatform(image: ImageConfig, platform: string): ImageConfig {
  const [os = '', architecture = '', variant] = platform.split('/');
  image.os = os;
  image.architecture = architecture;
  if (variant) image.variant = variant;
  return image;
}

/**
 * BuildKit's final image platform for an explicit target (dockerfile2llb's convert): the
 * target's os and architecture; its variant, unless it has none and the os and architecture
 * stay, which keeps the base's; then normalized (an arm64 image's v8 goes).
 */
function targetImagePlatform(image: ImageConfig, target: string): void {
  const wanted = parsePlatform(target);
  const same = image.os === wanted.os && image.architecture === wanted.architecture;
  const variant = wanted.variant ?? (same ? image.variant : undefined);
  const p = normalizePlatform({ os: wanted.os, architecture: wanted.architecture, ...(variant ? { variant } : {}) });
  image.os = p.os;
  image.architecture = p.architecture;
  if (p.variant) image.variant = p.variant;
  else delete image.variant;
}

function imageKey(ref: string, platform: string): string {
  return `${platform} ${ref}`;
}

/** Resolves each image the target needs, once per ref and platform, all at the same time. */
async function resolveImages(plan: StagePlan, input: FrontendInput, targetPlatform: string): Promise<Map<string, ResolvedImage>> {
  const wanted = new Map<string, { ref: string; platform: string; at: LineRange }>();
  const want = (ref: string, platform: string, at: LineRange): void => {
    if (!wanted.has(imageKey(ref, platform))) wanted.set(imageKey(ref, platform), { ref, platform, at });
  };
  for (const st of plan.reachable) {
    if (st.base.kind === 'image') want(st.base.ref, st.base.platform ?? targetPlatform, st.parsed.at);
    for (const [ins, from] of st.copyFrom) if (from.kind === 'image') want(from.ref, targetPlatform, ins.at);
    for (const { from, at } of st.mountFrom.values()) if (from.kind === 'image') want(from.ref, targetPlatform, at);
  }
  const entries = await Promise.all([...wanted].map(async ([key, { ref, platform, at }]): Promise<[string, ResolvedImage]> => {
    if (input.signal?.aborted) throw new BuildError('cancelled', 'Cannot resolve images: the build was cancelled');
    try {
      return [key, await input.resolveImage(ref, { platform, signal: input.signal })];
    } catch (err) {
      const e = toBuildError(err, 'unavailable');
      throw new BuildError(e.code, `${input.filename}:${at.startLine}:1: ${ref}: ${e.message}`, {
        range: { file: input.filename, startLine: at.startLine, endLine: at.endLine, column: 1 }, cause: err,
      });
    }
  }));
  return new Map(entries);
}

/** `# syntax=` is accepted; one that names another frontend than Docker's gets a warning. */
function syntaxDirectiveWarning(value: string | undefined, filename: string, at?: LineRange): FrontendWarning | undefined {
  if (value === undefined) return undefined;
  if (/^((docker\.io\/)?docker\/dockerfile(-upstream)?)(:[\w.-]+)?(@sha256:[a-f0-9]{64})?$/.test(value)) return undefined;
  return {
    message: `the syntax directive names ${value}, another frontend than docker/dockerfile: buildd builds with its own Dockerfile frontend`,
    ...(at ? { range: { file: filename, startLine: at.startLine, endLine: at.endLine } } : {}),
  };
}
