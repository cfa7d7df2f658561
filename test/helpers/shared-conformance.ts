import * as path from 'node:path';

/**
 * Where the shared conformance kit sits: `../shared/conformance` beside the project, on every
 * developer machine and in CI. Tests reach it only through these paths, never by an absolute
 * path of one machine.
 */
export const SHARED_CONFORMANCE = path.resolve(__dirname, '..', '..', '..', 'shared', 'conformance');

/** The shared image comparison (flattens docker and OCI archives, compares files and config). */
export const IMGDIFF = path.join(SHARED_CONFORMANCE, 'imgdiff.py');

/** A case directory of the shared conformance suite, e.g. `sharedCase('v07-add')`. */
export function sharedCase(name: string): string {
  return path.join(SHARED_CONFORMANCE, 'cases', name);
}
