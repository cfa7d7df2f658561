import { readFileSync } from 'node:fs';
import { capabilityNames } from './host-privileges';
import { DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './oci-defaults';
import { DEFAULT_SECCOMP_PROFILE, hostSeccompTarget, seccompForContainer, type OciSeccomp, type SeccompTarget } from './seccomp-profile';

/**
 * How much a RUN step is confined. 'sandbox' (the default): Docker's defaults. 'insecure'
 * (`RUN --security=insecure`, granted by the security.insecure entitlement): BuildKit's
 * privileged mode, every capability and no seccomp filter, masks or read-only /proc paths.
 */
export type SecurityMode = 'sandbox' | 'insecure';

/** The security-related parts of one container's spec. */
export interface SecuritySections {
  /** bounding = effective = permitted; inheritable and ambient stay empty */
  capabilities: string[];
  noNewPrivileges: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  /** absent: no filter */
  seccomp?: OciSeccomp;
}

/**
 * The one place that decides what a security mode means, so that everything it switches
 * (capabilities, seccomp, masked and read-only paths, no_new_privileges) changes together.
 * `target` overrides the host's architecture and kernel (for tests); the capabilities are
 * always the mode's own, since the seccomp rules depend on them. `daemonCapabilities`
 * overrides what the daemon holds (for tests).
 */
export function securitySections(
  mode: SecurityMode,
  target?: Omit<SeccompTarget, 'capabilities'>,
  daemonCapabilities: () => string[] = ownCapabilities,
): SecuritySections {
  if (mode === 'insecure') {
    // containerd's WithAllCurrentCapabilities (BuildKit's privileged mode): every capability
    // the daemon holds; one it lacks would make runc fail the step ("unable to apply caps")
    return { capabilities: daemonCapabilities(), noNewPrivileges: false, maskedPaths: [], readonlyPaths: [] };
  }
  const capabilities = [...DEFAULT_CAPABILITIES];
  const seccompTarget = target ? { ...target, capabilities } : hostSeccompTarget(capabilities);
  return {
    capabilities,
    // setuid binaries and file capabilities cannot raise what a step may do
    noNewPrivileges: true,
    maskedPaths: [...DEFAULT_MASKED_PATHS],
    readonlyPaths: [...DEFAULT_READONLY_PATHS],
    seccomp: seccompForContainer(DEFAULT_SECCOMP_PROFILE, seccompTarget),
  };
}

/** The capability names of a /proc/<pid>/status mask (`CapEff: 000001ffffffffff`), in number order. */
export function capabilitiesFromMask(hex: string): string[] {
  return capabilityNames(BigInt(`0x${hex.trim()}`));
}

let own: string[] | undefined;

/** The daemon's effective capabilities; they do not change while it runs, so read once. */
function ownCapabilities(): string[] {
  if (own === undefined) {
    const status = readFileSync('/proc/self/status', 'utf8');
    own = capabilitiesFromMask(/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0');
  }
  return [...own];
}
