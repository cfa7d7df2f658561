import * as os from 'node:os';
import * as path from 'node:path';
import { CHILD_ENV } from '../rootless/rootlesskit-reexec';

/** Where buildd reads its config without `--config` when run as root (BuildKit: /etc/buildkit/buildkitd.toml). */
export const SYSTEM_CONFIG_FILE = '/etc/buildd/buildd.toml';

/** What of the process decides the default config path: made per call from the process, or by a test. */
export interface ConfigPathContext {
  euid: number;
  env: NodeJS.ProcessEnv;
  homedir: string;
}

/**
 * The config file read without `--config`: /etc/buildd/buildd.toml, or for a rootless daemon
 * `$XDG_CONFIG_HOME/buildd/buildd.toml` (~/.config/buildd/buildd.toml), as BuildKit's
 * ~/.config/buildkit/buildkitd.toml. Rootless here is `--rootless`, a user other than root, or
 * the process rootlesskit started for a rootless buildd (root of the user's namespace, with the
 * same HOME as the user): so the starter and its re-executed self read the same file. Pure.
 */
export function defaultConfigPath(rootlessFlag: boolean, ctx: ConfigPathContext = processContext()): string {
  const rootless = rootlessFlag || ctx.euid !== 0 || ctx.env[CHILD_ENV] === '1';
  if (!rootless) return SYSTEM_CONFIG_FILE;
  // XDG: a relative XDG_CONFIG_HOME is invalid and ignored
  const xdg = ctx.env['XDG_CONFIG_HOME'];
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(ctx.homedir, '.config');
  return path.join(base, 'buildd', 'buildd.toml');
}

function processContext(): ConfigPathContext {
  return { euid: process.geteuid?.() ?? 0, env: process.env, homedir: os.homedir() };
}
