import { BuildError } from '../solver/build-error';
import type { Entitlement } from '../solver/entitlements';

/**
 * The entitlements one build gets: those its client asked for (`buildctl build --allow`),
 * each of which the daemon must allow (`--allow-insecure-entitlement`, config
 * `insecureEntitlements`). As BuildKit's entitlements.WhiteList, asking for one the daemon
 * does not allow fails the build at once, whether or not a step would use it.
 */
export function grantEntitlements(requested: readonly Entitlement[], daemonAllowed: readonly Entitlement[]): Set<Entitlement> {
  const granted = new Set<Entitlement>();
  for (const e of requested) {
    if (!daemonAllowed.includes(e)) {
      throw new BuildError(
        'permission-denied',
        `Cannot grant entitlement ${e}: it is not allowed by build daemon configuration; start buildd with --allow-insecure-entitlement ${e}`,
      );
    }
    granted.add(e);
  }
  return granted;
}
