import { BuildError } from './build-error';
import type { Op } from './op';

/**
 * BuildKit's entitlements: what a build may do beyond the sandbox. A build gets one only when
 * the client asks for it (`buildctl build --allow NAME`) and the daemon lets clients have it
 * (`buildd --allow-insecure-entitlement NAME`); the solver refuses a graph that needs one it
 * was not granted, before any op runs.
 */
export const ENTITLEMENTS = ['network.host', 'security.insecure'] as const;
export type Entitlement = (typeof ENTITLEMENTS)[number];

export function isEntitlement(name: string): name is Entitlement {
  return (ENTITLEMENTS as readonly string[]).includes(name);
}

/** `name` as an entitlement, or invalid-argument naming `flag` (BuildKit: "unknown entitlement X"). */
export function parseEntitlement(flag: string, name: string): Entitlement {
  if (isEntitlement(name)) return name;
  throw new BuildError('invalid-argument', `Cannot parse ${flag} ${name}: unknown entitlement ${name} (${ENTITLEMENTS.join(' or ')})`);
}

/** The entitlements running `op` needs. */
export function opEntitlements(op: Op): Entitlement[] {
  if (op.kind !== 'exec') return [];
  const needed: Entitlement[] = [];
  if (op.network === 'host') needed.push('network.host');
  if (op.security === 'insecure') needed.push('security.insecure');
  return needed;
}

/** One op of a checked graph, as `checkEntitlements` reads it. */
export interface EntitledVertex {
  digest: string;
  op: Op;
  meta: { name: string; range?: { file: string; startLine: number; endLine: number } };
}

/**
 * Throws permission-denied for the first op that needs an entitlement not in `granted`, with
 * BuildKit's wording ("network.host is not allowed") and the op's Dockerfile range.
 */
export function checkEntitlements(vertices: Iterable<EntitledVertex>, granted: ReadonlySet<Entitlement>): void {
  for (const v of vertices) {
    for (const e of opEntitlements(v.op)) {
      if (granted.has(e)) continue;
      throw new BuildError('permission-denied', `Cannot run ${v.meta.name}: ${e} is not allowed; the client must grant it with buildctl build --allow ${e}`, {
        range: v.meta.range,
        vertex: v.digest,
      });
    }
  }
}
