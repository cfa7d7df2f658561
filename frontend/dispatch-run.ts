import * as path from 'node:path';
import { commandArgs, commit, displayName, expanderFor, nextPrefix, opMeta, parseChown, PROXY_ARGS, shellOf } from './dispatch-helpers';
import { execNode, ExtraMount, fileNode } from './op-graph-builder';
import { extraMounts } from './run-mount-states';
import { MountError } from './run-mounts';
import { heredocScript } from './run-heredoc';
import { runNetworkMode } from './run-network';
import { runSessionMounts } from './run-secret-mounts';
import type { DispatchContext, StageState } from './stage-dispatch';
import { RunInstruction } from './parse-instruction';
import { LineRange } from './dockerfile-error';

/** RUN (an exec op on the stage's root) and WORKDIR (a mkdir, owned by the current USER). */

export function dispatchRun(st: StageState, ins: RunInstruction, ctx: DispatchContext): void {
  const x = expanderFor(st, ctx, ins.at);
  const config = st.image.config ?? (st.image.config = {});
  let args: string[];
  let suffix = '';
  if (ins.heredocs.length > 0 && ins.command.form === 'shell') {
    const script = heredocScript(ins.command.text, ins.heredocs, shellOf(config));
    args = script.args;
    suffix = script.summary === undefined ? '' : ` (${script.summary})`;
  } else {
    args = commandArgs(ins.command, config);
  }
  const name = nextPrefix(st) + displayName(ins.text, st, ctx, { rawQuotes: true, skipUnset: true }) + suffix;
  const env = st.env.toStrings();
  // The proxy ARGs reach the process without ARG, as in BuildKit; they stay out of history.
  for (const key of PROXY_ARGS) {
    if (Object.prototype.hasOwnProperty.call(ctx.buildArgs, key) && st.env.get(key) === undefined) env.push(`${key}=${ctx.buildArgs[key]}`);
  }
  let mounts: ExtraMount[];
  try {
    // secret and ssh mounts are lent by the client's session at run time, not states of the graph
    mounts = extraMounts(ins.mounts.filter((m) => m.type !== 'secret' && m.type !== 'ssh'), {
      workdir: config.WorkingDir || '/',
      source: (m) => ctx.mountSource(m),
      internalMeta: (internal) => ({ name: internal, ignoreCache: ctx.noCache }),
      expand: (word) => x.word(word),
    });
  } catch (err) {
    if (err instanceof MountError) x.fail(err.message);
    throw err;
  }
  const session = runSessionMounts(ins.mounts, env);
  env.push(...session.env);
  st.fs = execNode(st.fs, { args, env, cwd: config.WorkingDir || '/', user: config.User ?? '', hostname: ctx.hostname, mounts }, opMeta(ctx, ins.at, name), {
    network: runNetworkMode(ins.network, ctx.forceNetworkMode ?? 'sandbox'),
    // host network and insecure mode are checked against the build's entitlements by the daemon
    ...(ins.security === 'insecure' ? { security: 'insecure' as const } : {}),
    platform: st.platform,
  }, session);
  commit(st, `RUN ${runCommandString(args, st)} # buildkit`, true);
}

export function dispatchWorkdir(st: StageState, ins: { at: LineRange; text: string; value: string }, ctx: DispatchContext): void {
  const x = expanderFor(st, ctx, ins.at);
  const config = st.image.config ?? (st.image.config = {});
  const wd = path.posix.resolve(config.WorkingDir || '/', x.word(ins.value));
  config.WorkingDir = wd;
  if (wd === '/') {
    // BuildKit counts this step in the total but makes no op (and no step name) for the root.
    commit(st, `WORKDIR ${wd}`, false);
    return;
  }
  const name = nextPrefix(st) + displayName(ins.text, st, ctx, {});
  const chown = config.User ? parseChown(config.User) : undefined;
  st.fs = fileNode(st.fs, [], () => ({ type: 'mkdir', path: wd, mode: 0o755, makeParents: true, ...(chown ? { chown } : {}) }), opMeta(ctx, ins.at, name));
  commit(st, `WORKDIR ${wd}`, true);
}

/** `|2 A=1 B= /bin/sh -c ...`: the stage's ARGs with their values at this point. */
function runCommandString(args: string[], st: StageState): string {
  // Proxy args reach here only when declared with ARG, and then the reference lists them too.
  const shown = st.args.map((arg) => `${arg.key}=${st.env.get(arg.key) ?? arg.value ?? ''}`);
  const prefix = shown.length > 0 ? [`|${shown.length}`, ...shown] : [];
  return [...prefix, ...args].join(' ');
}
