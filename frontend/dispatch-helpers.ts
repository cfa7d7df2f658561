import { Chown, OpMeta } from '../solver/op';
import { ContainerConfig } from '../store/image-config';
import { dockerfileError, LineRange } from './dockerfile-error';
import { CommandLine } from './parse-instruction';
import { expandWord, expandWords, ExpandError, ExpandOptions } from './shell-lex';
import type { DispatchContext, StageState } from './stage-dispatch';

/** What the instruction dispatchers share: expansion with the line, history, op meta. */

export const HISTORY_COMMENT = 'buildkit.dockerfile.v0';
export const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** The proxy ARGs BuildKit predefines: RUN sees them without ARG, history never does. */
export const PROXY_ARGS = ['HTTP_PROXY', 'HTTPS_PROXY', 'FTP_PROXY', 'NO_PROXY', 'ALL_PROXY'].flatMap((k) => [k, k.toLowerCase()]);

/** Expansion against the stage's environment; a malformed word fails with the line. */
export interface Expander {
  word(text: string, options?: ExpandOptions): string;
  words(text: string): string[];
  fail(message: string, column?: number): never;
}

export function expanderFor(st: StageState, ctx: DispatchContext, at: LineRange): Expander {
  const fail = (message: string, column?: number): never => {
    throw dockerfileError(ctx.filename, column === undefined ? at : { ...at, column }, message);
  };
  const lookup = (k: string): string | undefined => st.env.get(k);
  const guard = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      if (err instanceof ExpandError) return fail(err.message);
      throw err;
    }
  };
  return {
    word: (text, options = {}) => guard(() => expandWord(text, lookup, { escape: ctx.escape, ...options })),
    words: (text) => guard(() => expandWords(text, lookup, { escape: ctx.escape })),
    fail,
  };
}

/** Progress names show the instruction with variables filled in; a bad word shows as written. */
export function displayName(text: string, st: StageState, ctx: DispatchContext, options: ExpandOptions): string {
  try {
    return expandWord(text, (k) => st.env.get(k), { escape: ctx.escape, ...options });
  } catch {
    return text;
  }
}

export function opMeta(ctx: DispatchContext, at: LineRange, name: string): OpMeta {
  return { name, range: { file: ctx.filename, startLine: at.startLine, endLine: at.endLine }, ignoreCache: ctx.noCache };
}

/** Exec form as is; shell form behind the SHELL (or /bin/sh -c). */
export function commandArgs(command: CommandLine, config: ContainerConfig): string[] {
  if (command.form === 'exec') return [...command.args];
  return [...shellOf(config), command.text];
}

export function shellOf(config: ContainerConfig): string[] {
  return config.Shell && config.Shell.length > 0 ? [...config.Shell] : [...DEFAULT_SHELL];
}

/** `user[:group]`, names or numbers (resolved by the worker); undefined when malformed. */
export function parseChown(text: string): Chown | undefined {
  const colon = text.indexOf(':');
  // `:grp` is root with that group, as in the reference.
  const user = colon < 0 ? text : text.slice(0, colon) || (colon > 0 ? '' : '0');
  const group = colon < 0 ? undefined : text.slice(colon + 1);
  if (user === '' || group === '' || /\s/.test(text)) return undefined;
  return group === undefined ? { user } : { user, group };
}

/** One history entry, with or without a layer. */
export function commit(st: StageState, createdBy: string, withLayer: boolean): void {
  const history = st.image.history ?? (st.image.history = []);
  history.push(withLayer ? { created_by: createdBy, comment: HISTORY_COMMENT } : { created_by: createdBy, comment: HISTORY_COMMENT, empty_layer: true });
}

/** `[build 2/3] ` and so on; consumes one step index. */
export function nextPrefix(st: StageState): string {
  if (st.cmdTotal === 0) return '';
  st.cmdIndex++;
  const width = 1 + Math.floor(Math.log10(Math.max(st.cmdTotal, st.cmdIndex)));
  const platform = st.targetPlatform === undefined ? '' : `${st.platform}${targetSuffix(st.platform, st.targetPlatform)} `;
  return `[${platform}${st.displayName ? st.displayName + ' ' : ''}${String(st.cmdIndex).padStart(width, ' ')}/${st.cmdTotal}] `;
}

/**
 * BuildKit's `->arm64` of a step that runs on one platform for another target (a stage on
 * $BUILDPLATFORM in a multi-platform build): the target's arch[/variant], or all of it when
 * the os differs; nothing when the arch is the same.
 */
function targetSuffix(platform: string, target: string): string {
  const [os, arch] = platform.split('/');
  const [tos, tarch, tvariant] = target.split('/');
  if (os !== tos) return `->${target}`;
  if (arch !== tarch) return `->${tarch}${tvariant ? '/' + tvariant : ''}`;
  return '';
}
