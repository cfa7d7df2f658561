import { BuildError } from '../solver/build-error';

/** The network of one RUN step, as BuildKit's NetMode: the CNI network, loopback only, or the daemon's own. */
export type NetworkMode = 'sandbox' | 'none' | 'host';

/**
 * `--opt force-network-mode=VALUE`, read as BuildKit's dockerui parseNetMode: empty or
 * absent is `sandbox`; anything but none, host and sandbox fails the build.
 */
export function parseForceNetworkMode(value: string | undefined): NetworkMode {
  if (value === undefined || value === '') return 'sandbox';
  if (value === 'none' || value === 'host' || value === 'sandbox') return value;
  throw new BuildError('invalid-argument', `Cannot use --opt force-network-mode=${value}: invalid netmode ${value} (none, host or sandbox)`);
}

/**
 * The network a RUN gets. As in BuildKit, force-network-mode is the network of every stage's
 * state, and `RUN --network=none|host` overrides it; `--network=default` (like no flag) keeps it.
 */
export function runNetworkMode(flag: 'default' | 'none' | 'host' | undefined, forced: NetworkMode): NetworkMode {
  return flag === 'none' || flag === 'host' ? flag : forced;
}
