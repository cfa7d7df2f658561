import * as path from 'node:path';
import { Chown, OpMeta } from '../solver/op';
import { ImageConfig } from '../store/image-config';
import { cloneImage, ensurePath } from './base-image';
import { dockerfileError, LineRange } from './dockerfile-error';
import { EnvList } from './env-list';
import { parsePortSpec, PortSpecError } from './expose-ports';
import { execNode, fileNode, FsState, OpNode } from './op-graph-builder';
import { goEmptyStructMap, goQuoteList } from './go-format';
import { CommandLine, ParsedInstruction } from './parse-dockerfile';
import { expandWord, expandWords, ExpandError, ExpandOptions } from './shell-lex';

/**
 * Applies one stage's instructions to its state, the way BuildKit's dispatchers do: RUN,
 * COPY and WORKDIR add an op (and a layer), everything else changes only the image config.
 * Each instruction adds one history entry.
 */

const HISTORY_COMMENT = 'buildkit.dockerfile.v0';
const DEFAULT_SHELL = ['/bin/sh', '-c'];

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
}

/** What dispatching needs from the build as a whole. */
export interface DispatchContext {
  filename: string;
  escape: string;
  noCache: boolean;
  buildArgs: Readonly<Record<string, string>>;
  globalArgs: EnvList;
  /** the build context's source node (created once per build) */
  context(): OpNode;
  /** the state a `COPY --from` reads, already resolved by the caller */
  copySource(ins: ParsedInstruction & { kind: 'COPY' }): FsState;
}

/** A new stage on top of another stage's final state, as BuildKit's init() does. */
export function deriveStage(parent: StageState, displayName: string, cmdTotal: number): StageState {
  const image = cloneImage(parent.image);
  if (image.config) delete image.config.OnBuild;
  return {
    fs: parent.fs, image, env: parent.env.clone(), args: parent.args.map((a) => ({ ...a })),
    cmdSet: false, displayName, cmdIndex: 0, cmdTotal,
  };
}

/** A new stage on top of a base image (already normalized) or scratch. */
export function startStage(fs: FsState, image: ImageConfig, displayName: string, cmdTotal: number): StageState {
  image.config = image.config ?? {};
  ensurePath(image.config);
  return {
    fs, image, env: EnvList.fromStrings(image.config.Env ?? []), args: [],
    cmdSet: false, displayName, cmdIndex: 0, cmdTotal,
  };
}

/** `[build 2/3] ` and so on; consumes one step index. */
export function nextPrefix(st: StageState): string {
  if (st.cmdTotal === 0) return '';
  st.cmdIndex++;
  const width = 1 + Math.floor(Math.log10(st.cmdTotal));
  return `[${st.displayName ? st.displayName + ' ' : ''}${String(st.cmdIndex).padStart(width, ' ')}/${st.cmdTotal}] `;
}

/** Applies one instruction. */
export function dispatchInstruction(st: StageState, ins: ParsedInstruction, ctx: DispatchContext): void {
  const fail = (message: string): never => {
    throw dockerfileError(ctx.filename, ins.at, message);
  };
  const expand = (word: string, options: ExpandOptions = {}): string => {
    try {
      return expandWord(word, (k) => st.env.get(k), { escape: ctx.escape, ...options });
    } catch (err) {
      if (err instanceof ExpandError) return fail(err.message);
      throw err;
    }
  };
  const config = st.image.config ?? (st.image.config = {});
  switch (ins.kind) {
    case 'ENV': {
      const pairs = ins.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value) }));
      const env = EnvList.fromStrings(config.Env ?? []);
      for (const { key, value } of pairs) {
        st.env.set(key, value);
        env.set(key, value);
      }
      config.Env = env.toStrings();
      commit(st, 'ENV ' + pairs.map((p) => `${p.key}=${p.value}`).join(' '), false);
      return;
    }
    case 'LABEL': {
      const pairs = ins.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value) }));
      const labels = config.Labels ?? {};
      for (const { key, value } of pairs) labels[key] = value;
      config.Labels = labels;
      commit(st, 'LABEL ' + pairs.map((p) => `${p.key}=${p.value}`).join(' '), false);
      return;
    }
    case 'ARG': {
      const shown: string[] = [];
      for (const arg of ins.args) {
        const def = arg.value === undefined ? undefined : expand(arg.value);
        let value: string | undefined;
        if (Object.prototype.hasOwnProperty.call(ctx.buildArgs, arg.key)) value = ctx.buildArgs[arg.key];
        else if (def !== undefined) value = def;
        else value = ctx.globalArgs.get(arg.key);
        if (value !== undefined) st.env.set(arg.key, value);
        st.args.push({ key: arg.key, value });
        // The reference builder records the default as written (expanded), not the override.
        shown.push(def === undefined ? arg.key : `${arg.key}=${def}`);
      }
      commit(st, 'ARG ' + shown.join(' '), false);
      return;
    }
    case 'USER':
      config.User = expand(ins.value);
      commit(st, `USER ${config.User}`, false);
      return;
    case 'EXPOSE': {
      const keys: string[] = [];
      for (const raw of ins.ports) {
        for (const spec of expandWordsOrFail(raw, st, ctx, fail)) {
          try {
            keys.push(...parsePortSpec(spec));
          } catch (err) {
            if (err instanceof PortSpecError) fail(err.message);
            throw err;
          }
        }
      }
      const exposed = config.ExposedPorts ?? {};
      for (const k of keys) exposed[k] = {};
      config.ExposedPorts = exposed;
      commit(st, `EXPOSE ${goEmptyStructMap(keys)}`, false);
      return;
    }
    case 'CMD': {
      const args = commandArgs(ins.command, config.Shell);
      config.Cmd = args;
      config.ArgsEscaped = true;
      st.cmdSet = true;
      commit(st, `CMD ${goQuoteList(args)}`, false);
      return;
    }
    case 'ENTRYPOINT': {
      const args = commandArgs(ins.command, config.Shell);
      config.Entrypoint = args;
      // A CMD inherited from the base would be handed to the new entrypoint by surprise.
      if (!st.cmdSet) delete config.Cmd;
      commit(st, `ENTRYPOINT ${goQuoteList(args)}`, false);
      return;
    }
    case 'RUN': {
      const args = commandArgs(ins.command, config.Shell);
      const name = nextPrefix(st) + displayName(ins.text, st, ctx, { rawQuotes: true, skipUnset: true });
      st.fs = execNode(st.fs, { args, env: st.env.toStrings(), cwd: config.WorkingDir || '/', user: config.User ?? '' }, meta(ctx, ins.at, name));
      commit(st, `RUN ${runCommandString(args, st)} # buildkit`, true);
      return;
    }
    case 'WORKDIR': {
      const written = expand(ins.value);
      const wd = path.posix.resolve(config.WorkingDir || '/', written);
      config.WorkingDir = wd;
      if (wd === '/') {
        // BuildKit counts this step in the total but makes no op (and no step name) for the root.
        commit(st, `WORKDIR ${wd}`, false);
        return;
      }
      const name = nextPrefix(st) + displayName(ins.text, st, ctx, {});
      const chown = config.User ? parseChown(config.User) : undefined;
      st.fs = fileNode(st.fs, [], () => ({ type: 'mkdir', path: wd, mode: 0o755, makeParents: true, ...(chown ? { chown } : {}) }), meta(ctx, ins.at, name));
      commit(st, `WORKDIR ${wd}`, true);
      return;
    }
    case 'COPY': {
      const sources = ins.sources.map((s) => expand(s));
      const writtenDest = expand(ins.dest);
      const dest = resolveDest(config.WorkingDir || '/', writtenDest);
      if (sources.length > 1 && !dest.endsWith('/')) {
        fail('When using COPY with more than one source file, the destination must be a directory and end with a /');
      }
      const chownText = ins.chown === undefined ? undefined : expand(ins.chown);
      const chown = chownText === undefined ? undefined : parseChown(chownText) ?? fail(`invalid --chown value: "${chownText}"`);
      const chmodText = ins.chmod === undefined ? undefined : expand(ins.chmod);
      if (chmodText !== undefined && !/^[0-7]{1,4}$/.test(chmodText)) fail(`invalid --chmod value: "${chmodText}" (an octal mode such as 0755 is expected)`);
      const chmod = chmodText === undefined ? undefined : parseInt(chmodText, 8);
      const src = ins.from === undefined ? ctx.context() : ctx.copySource(ins);
      const name = nextPrefix(st) + displayName(ins.text, st, ctx, {});
      st.fs = fileNode(st.fs, [src], ([srcPos]) => ({
        type: 'copy', src: srcPos, srcPaths: sources, dest,
        ...(chown ? { chown } : {}), ...(chmod !== undefined ? { chmod } : {}),
      }), meta(ctx, ins.at, name));
      commit(st, `COPY ${sources.join(' ')} ${writtenDest} # buildkit`, true);
      return;
    }
  }
}

function expandWordsOrFail(raw: string, st: StageState, ctx: DispatchContext, fail: (m: string) => never): string[] {
  try {
    return expandWords(raw, (k) => st.env.get(k), { escape: ctx.escape });
  } catch (err) {
    if (err instanceof ExpandError) return fail(err.message);
    throw err;
  }
}

/** Progress names show the instruction with variables filled in; a bad word shows as written. */
function displayName(text: string, st: StageState, ctx: DispatchContext, options: ExpandOptions): string {
  try {
    return expandWord(text, (k) => st.env.get(k), { escape: ctx.escape, ...options });
  } catch {
    return text;
  }
}

function meta(ctx: DispatchContext, at: LineRange, name: string): OpMeta {
  return { name, range: { file: ctx.filename, startLine: at.startLine, endLine: at.endLine }, ignoreCache: ctx.noCache };
}

function commandArgs(command: CommandLine, shell: readonly string[] | null | undefined): string[] {
  if (command.form === 'exec') return [...command.args];
  return [...(shell && shell.length > 0 ? shell : DEFAULT_SHELL), command.text];
}

/** `|2 A=1 B= /bin/sh -c ...`: the stage's ARGs with their values at this point. */
function runCommandString(args: string[], st: StageState): string {
  const shown = new Map<string, string>();
  for (const arg of st.args) shown.set(arg.key, `${arg.key}=${st.env.get(arg.key) ?? arg.value ?? ''}`);
  const prefix = shown.size > 0 ? [`|${shown.size}`, ...shown.values()] : [];
  return [...prefix, ...args].join(' ');
}

function resolveDest(workdir: string, written: string): string {
  const asDir = written === '' || written === '.' || written.endsWith('/');
  const resolved = path.posix.resolve(workdir, written);
  return asDir && !resolved.endsWith('/') ? resolved + '/' : resolved;
}

function parseChown(text: string): Chown | undefined {
  const colon = text.indexOf(':');
  const user = colon < 0 ? text : text.slice(0, colon);
  const group = colon < 0 ? undefined : text.slice(colon + 1);
  if (user === '' || group === '') return undefined;
  return group === undefined ? { user } : { user, group };
}

function commit(st: StageState, createdBy: string, withLayer: boolean): void {
  const history = st.image.history ?? (st.image.history = []);
  history.push(withLayer ? { created_by: createdBy, comment: HISTORY_COMMENT } : { created_by: createdBy, comment: HISTORY_COMMENT, empty_layer: true });
}
