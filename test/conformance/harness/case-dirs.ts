import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

/** The repository: the nearest directory above with a package.json (compiled, the harness sits under .state/). */
function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`Cannot find the repository: no package.json above ${__dirname}`);
  }
}

const REPO = repoRoot();

/** The project's own cases: one directory each, with a Dockerfile. */
export const OWN_CASES_DIR = path.join(REPO, 'test', 'conformance', 'cases');

/**
 * The shared conformance kit, where a machine has one beside the repository
 * (`../shared/conformance`): optional, found by this relative place only, never by a machine's path.
 */
export const SHARED_CONFORMANCE_DIR = path.resolve(REPO, '..', 'shared', 'conformance');

/** The shared kit's cases directory, or undefined where there is none. */
export function sharedCasesDir(): string | undefined {
  const dir = path.join(SHARED_CONFORMANCE_DIR, 'cases');
  return existsSync(dir) && statSync(dir).isDirectory() ? dir : undefined;
}

/** The case directories under `dir` (those with a Dockerfile), sorted by name. */
export function listCases(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .map((name) => path.join(dir, name))
    .filter((d) => existsSync(path.join(d, 'Dockerfile')));
}

/** Whether any of the cases builds on localhost:5000/debian (then the reference world needs it). */
export function needsDebian(cases: readonly string[]): boolean {
  return cases.some((d) => /localhost:5000\/debian\b/.test(readFileSync(path.join(d, 'Dockerfile'), 'utf8')));
}
