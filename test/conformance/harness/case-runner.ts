import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { buildctlFlags, dockerBuildFlags, readCaseArgs } from './case-args';
import { compareImages, formatDifference, type Difference } from './image-compare';
import type { ReferenceWorld } from './reference-world';
import { runCommand } from './run-command';

export interface CaseRunOptions {
  world: ReferenceWorld;
  /** The candidate: buildctl's command line up to its subcommand (program, --addr, TLS flags). */
  buildctl: readonly string[];
  /** Each case's details go to OUT/NAME: both build logs, both archives, diff.txt. */
  outDir: string;
  /** Keep both image archives after the comparison (default: removed, only logs and diff.txt stay). */
  keepArchives?: boolean;
}

/** How one case came out. A plain value. */
export interface CaseResult {
  name: string;
  outcome: 'same' | 'different' | 'reference build failed' | 'candidate build failed' | 'comparison failed';
  differences: Difference[];
  /** For a person: the differences, or the end of the failed build's log. Empty when `same`. */
  detail: string;
}

/** The one line run.sh printed for a case: `NAME: same`, `NAME: 3 differences`, `NAME: candidate build failed`. */
export function summaryLine(r: CaseResult): string {
  if (r.outcome === 'different') return `${r.name}: ${r.differences.length} difference${r.differences.length === 1 ? '' : 's'}`;
  return `${r.name}: ${r.outcome}`;
}

/**
 * Builds a case (a directory with a Dockerfile, its context and an optional args.json) with
 * the reference (`docker build` on BuildKit, `docker save`) and with buildctl
 * (`--output type=oci`), at the same time, and compares the two images: files, config, history.
 */
export async function runCase(caseDir: string, opts: CaseRunOptions): Promise<CaseResult> {
  const dir = path.resolve(caseDir);
  const name = path.basename(dir);
  const out = path.join(opts.outDir, name);
  await fsp.rm(out, { recursive: true, force: true });
  await fsp.mkdir(out, { recursive: true });
  const args = await readCaseArgs(dir);
  const refTar = path.join(out, 'reference.tar');
  const candTar = path.join(out, 'candidate.tar');
  const refLog = path.join(out, 'reference.log');
  const candLog = path.join(out, 'candidate.log');
  const tag = `buildd-conformance/${name.toLowerCase()}`;

  const reference = async (): Promise<boolean> => {
    const built = await opts.world.docker(['build', '-q', '--network=none', ...dockerBuildFlags(args), '-t', tag, dir], { logFile: refLog, env: { DOCKER_BUILDKIT: '1' } });
    if (built.code !== 0) return false;
    return (await opts.world.docker(['save', '-o', refTar, tag], { logFile: refLog })).code === 0;
  };
  const candidate = async (): Promise<boolean> => {
    const [program, ...pre] = opts.buildctl;
    const built = await runCommand(program, [
      ...pre, 'build', '--frontend', 'dockerfile.v0', '--local', `context=${dir}`, '--local', `dockerfile=${dir}`,
      ...buildctlFlags(args), '--output', `type=oci,dest=${candTar}`,
    ], { logFile: candLog });
    return built.code === 0 && (await fsp.stat(candTar).then((s) => s.size > 0, () => false));
  };
  const logTail = async (file: string): Promise<string> => `${path.basename(file)}:\n${(await fsp.readFile(file, 'utf8').catch(() => '')).slice(-4000)}`;

  try {
    const [refOk, candOk] = await Promise.all([reference(), candidate()]);
    if (!refOk) return { name, outcome: 'reference build failed', differences: [], detail: await logTail(refLog) };
    if (!candOk) return { name, outcome: 'candidate build failed', differences: [], detail: await logTail(candLog) };
    let differences: Difference[];
    try {
      differences = await compareImages(refTar, candTar);
    } catch (err) {
      const why = (err as Error).message;
      await fsp.writeFile(path.join(out, 'diff.txt'), `${why}\n`);
      return { name, outcome: 'comparison failed', differences: [], detail: why };
    }
    const lines = differences.map(formatDifference);
    await fsp.writeFile(path.join(out, 'diff.txt'), [...lines, `${differences.length} differences`, ''].join('\n'));
    if (differences.length === 0) return { name, outcome: 'same', differences, detail: '' };
    return { name, outcome: 'different', differences, detail: lines.join('\n').slice(0, 8000) };
  } finally {
    if (!opts.keepArchives) {
      await fsp.rm(refTar, { force: true });
      await fsp.rm(candTar, { force: true });
    }
  }
}
