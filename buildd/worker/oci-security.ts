import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './oci-defaults';
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
 * always the mode's own, since the seccomp rules depend on them.
 */
export function securitySections(mode: SecurityMode, target?: Omit<SeccompTarget, 'capabilities'>): SecuritySections {
  if (mode === 'insecure') {
    return { capabilities: [...ALL_CAPABILITIES], noNewPrivileges: false, maskedPaths: [], readonlyPaths: [] };
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
