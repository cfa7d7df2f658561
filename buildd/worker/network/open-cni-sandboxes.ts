import * as path from 'node:path';
import type pino from 'pino';
import { DEFAULT_CNI_BINARY_DIR, defaultConflist, loadConflist } from './cni-conflist';
import { CniSandboxes, type Uplink } from './cni-sandboxes';

export interface OpenCniSandboxesOptions {
  /** buildd's network state directory (`<root>/net`) */
  stateDir: string;
  /** the operator's network config; undefined: buildd's own bridge network */
  cniConfigPath?: string;
  /** the plugin binaries; undefined: Debian's /usr/lib/cni */
  cniBinaryDir?: string;
  /** sandboxes kept ready; 0 or undefined: none */
  poolSize?: number;
  /** rootless: the namespace the bridge lives in (see CniSandboxesOptions.uplink) */
  uplink?: Uplink;
  logger?: pino.Logger;
}

/**
 * The daemon's CNI sandboxes from its config: the operator's conflist, or buildd's default
 * bridge network with host-local leases under `<stateDir>/ipam` (buildd's own, so a restart may
 * clear them). Fails when a plugin the list names is not installed.
 */
export async function openCniSandboxes(opts: OpenCniSandboxesOptions): Promise<CniSandboxes> {
  const stateDir = path.resolve(opts.stateDir);
  const ipamDataDir = path.join(stateDir, 'ipam');
  const own = opts.cniConfigPath === undefined;
  const conflist = own ? defaultConflist({ ipamDataDir }) : await loadConflist(opts.cniConfigPath as string);
  const sandboxes = new CniSandboxes({
    stateDir,
    conflist,
    binDirs: [path.resolve(opts.cniBinaryDir ?? DEFAULT_CNI_BINARY_DIR)],
    ownIpamDataDir: own ? ipamDataDir : undefined,
    poolSize: opts.poolSize,
    uplink: opts.uplink,
    logger: opts.logger,
  });
  await sandboxes.check();
  return sandboxes;
}
