import { ImageConfig } from '../store/image-config';
import { cloneImage, ensurePath } from './base-image';
import { Lint } from './build-checks';
import { dispatchConfig } from './dispatch-config';
import { dispatchCopy } from './dispatch-copy';
export { nextPrefix } from './dispatch-helpers';
import { dispatchRun, dispatchWorkdir } from './dispatch-run';
import { EnvList } from './env-list';
import { FsState, OpNode } from './op-graph-builder';
import { CopyInstruction, ParsedInstruction } from './parse-instruction';
import type { RunMount } from './run-mounts';

/**
 * Applies one stage's instructions to its state, the way BuildKit's dispatchers do: RUN,
 * COPY, ADD and WORKDIR add an op (and a layer), everything else changes only the image
 * config. Each instruction adds one history entry.
 */

/** An ARG declared in the stage; RUN history lists them (`RUN |2 A=1 B= ...`). */
export interface DeclaredArg { key: string; value?: string }

/** Everything a stage carries from one instruction to the next. */
export interface StageState {
  fs: FsState;
  image: ImageConfig;
  /** the process environment: image Env, then ARG values, replaced in place */
  env: EnvList;
  args: DeclaredArg[];
  /** whether this stage has run CMD (ENTRYPOINT keeps only such a CMD) */
  cmdSet: boolean;
  /** progress prefix: stage name ('' when the Dockerfile has one stage), index, total */
  displayName: string;
  cmdIndex: number;
  cmdTotal: number;
  /**
   * how many history entries at the start of `image` came with the base image (of this stage
   * or the stage it derives from): the exporter keeps their times under SOURCE_DATE_EPOCH
   */
  baseHistory: number;
  /**
   * the platform the stage's steps run as, `os/arch[/variant]`: its FROM --platform, else the
   * target's; a stage built on another stage has that stage's
   */
  platform: string;
  /**
   * the build's target, set in a multi-platform build only: step names then start with the
   * platform, as BuildKit's (`[linux/arm64 2/3]`, `[linux/amd64->arm64 build 1/2]`)
   */
  targetPlatform?: string;
}

/** What dispatching needs from the build as a whole. */
export interface DispatchContext {
  filename: string;
  escape: string;
  noCache: boolean;
  buildArgs: Readonly<Record<string, string>>;
  globalArgs: EnvList;
  /** build-check findings of dispatch (UndefinedArgInFrom and the like) */
  lints: Lint[];
  /** --opt force-network-mode: the network of a RUN without --network=none|host; sandbox when absent */
  forceNetworkMode?: 'none' | 'sandbox' | 'host';
  /** --opt hostname: every RUN's hostname; the executor's default when absent */
  hostname?: string;
  /** the build context's source node (created once per build) */
  context(): OpNode;
  /** the state a `COPY --from` reads, already resolved by the caller */
  copySource(ins: CopyInstruction): FsState;
  /** the state a `RUN --mount` of type bind or cache reads: its `from`, else the build context */
  mountSource(mount: RunMount): FsState;
  /** a source op outside the Dockerfile's images (ADD of a URL or a git repository) */
  source(identifier: string, attrs: Record<string, string>, name: string): OpNode;
}

/**
 * A new stage on top of another stage's final state, as BuildKit's init() does: the config
 * and environment (with the ARG values) carry over, but the ARG declarations do not — RUN
 * history lists only the stage's own ARGs, as the reference's does. The caller runs and
 * clears the ONBUILD triggers.
 */
export function deriveStage(parent: StageState, displayName: string, cmdTotal: number): StageState {
  return {
    fs: parent.fs, image: cloneImage(parent.image), env: parent.env.clone(), args: [],
    cmdSet: false, displayName, cmdIndex: 0, cmdTotal, baseHistory: parent.baseHistory, platform: parent.platform,
    ...(parent.targetPlatform !== undefined ? { targetPlatform: parent.targetPlatform } : {}),
  };
}

/** A new stage on top of a base image (already normalized) or scratch. */
export function startStage(fs: FsState, image: ImageConfig, displayName: string, cmdTotal: number, platform: string): StageState {
  image.config = image.config ?? {};
  ensurePath(image.config);
  return {
    fs, image, env: EnvList.fromStrings(image.config.Env ?? []), args: [],
    cmdSet: false, displayName, cmdIndex: 0, cmdTotal, baseHistory: image.history?.length ?? 0, platform,
  };
}

/** Applies one instruction. */
export function dispatchInstruction(st: StageState, ins: ParsedInstruction, ctx: DispatchContext): void {
  switch (ins.kind) {
    case 'RUN':
      return dispatchRun(st, ins, ctx);
    case 'WORKDIR':
      return dispatchWorkdir(st, ins, ctx);
    case 'COPY':
    case 'ADD':
      return dispatchCopy(st, ins, ctx);
    default:
      return dispatchConfig(st, ins, ctx);
  }
}
