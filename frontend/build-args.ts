import { dockerfileError } from './dockerfile-error';
import { EnvList } from './env-list';
import { ParsedDockerfile } from './parse-dockerfile';
import { PROXY_ARGS } from './dispatch-helpers';
import { expandWord, ExpandError } from './shell-lex';
import type { StagePlan } from './stage-plan';
import type { FrontendWarningLike } from './lint-types';

/** The build's global ARG scope and the "build-args were not consumed" warning. */

/**
 * BuildKit's predefined platform ARGs for a target and the build platform (the worker's own),
 * both normalized `os/arch[/variant]` (so linux/arm gives TARGETVARIANT=v7, linux/arm64 none).
 */
export function platformArgs(target: string, build = 'linux/amd64'): Array<[string, string]> {
  const [os = '', arch = '', variant = ''] = target.split('/');
  const [bos = '', barch = '', bvariant = ''] = build.split('/');
  return [
    ['BUILDPLATFORM', build], ['BUILDOS', bos], ['BUILDARCH', barch], ['BUILDVARIANT', bvariant],
    ['TARGETPLATFORM', target], ['TARGETOS', os], ['TARGETARCH', arch], ['TARGETVARIANT', variant],
  ];
}

/** Global ARGs: the predefined ones, then those before the first FROM, build args overriding. */
export function metaArgs(parsed: ParsedDockerfile, buildArgs: Record<string, string>, filename: string, targetPlatform: string, buildPlatform = 'linux/amd64'): EnvList {
  const args = new EnvList(platformArgs(targetPlatform, buildPlatform));
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
      } else if (args.get(arg.key) !== undefined) {
        // The reference BuildKit: a global `ARG TARGETARCH` without a default blanks the
        // predefined value (conformance case c08).
        args.set(arg.key, '');
      }
    }
  }
  return args;
}

/**
 * Build args no reachable ARG declares. The proxy args are always consumed, and so are
 * SOURCE_DATE_EPOCH (the exporters read it, and buildctl passes it on from the client's
 * environment) and BUILDKIT_INLINE_CACHE (the daemon reads it: an inline cache export).
 */
export function unusedBuildArgs(parsed: ParsedDockerfile, plan: StagePlan, buildArgs: Record<string, string>): FrontendWarningLike[] {
  const declared = new Set<string>([...PROXY_ARGS, 'SOURCE_DATE_EPOCH', 'BUILDKIT_INLINE_CACHE']);
  for (const decl of parsed.globalArgs) for (const a of decl.args) declared.add(a.key);
  for (const st of plan.reachable) for (const ins of st.parsed.instructions) if (ins.kind === 'ARG') for (const a of ins.args) declared.add(a.key);
  const unused = Object.keys(buildArgs).filter((k) => !declared.has(k)).sort();
  return unused.length === 0 ? [] : [{ message: `One or more build-args [${unused.join(' ')}] were not consumed` }];
}
