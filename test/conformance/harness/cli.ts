import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { listCases, needsDebian, OWN_CASES_DIR, sharedCasesDir } from './case-dirs';
import { runCase, summaryLine } from './case-runner';
import { flattenImage } from './flatten-image';
import { compareImages, formatDifference } from './image-compare';
import { DEFAULT_STATE_DIR, dockerHostOf, startReferenceWorld, stopReferenceWorld } from './reference-world';

const USAGE = `The project's conformance harness: the reference builder (BuildKit inside Debian's dockerd)
against buildd, image by image. Usually through scripts/conformance.sh. Needs root.

  reference start [--no-debian]  start what is not serving: docker-registry on 127.0.0.1:5000 with
                                 localhost:5000/busybox and /debian:bookworm, dockerd on its own socket
  reference stop                 stop what reference start started
  reference env                  print the DOCKER_HOST line to eval
  run [CASE_DIR ...]             build each case with the reference and with $BUILDCTL, compare;
                                 default: test/conformance/cases/* and, where it exists,
                                 ../shared/conformance/cases/*. Details under $OUT
                                 (default /tmp/buildd-conformance-out). Starts what is missing
                                 of the reference world and stops that again at the end.
  compare REFERENCE CANDIDATE    compare two images (docker save tar, OCI layout tar or directory)
  flatten IMAGE                  print an image's files, config and history as JSON

$BUILDD_CONFORMANCE_DIR: the reference world's state (default ${DEFAULT_STATE_DIR}).
$BUILDCTL: buildctl's command line, e.g. "node bin/buildctl.js --addr tcp://127.0.0.1:1234 --tlsdir .state/certs/client".`;

const say = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const stateDir = process.env['BUILDD_CONFORMANCE_DIR'] || DEFAULT_STATE_DIR;
  const [command, ...rest] = argv;
  if (command === 'reference' && rest[0] === 'start') {
    const world = await startReferenceWorld({ stateDir, debian: !rest.includes('--no-debian'), log: say });
    say(`reference ready: registry http://${world.registry}, dockerd DOCKER_HOST=${world.dockerHost}${world.started.length ? ` (started: ${world.started.join(', ')})` : ' (all was serving)'}`);
    return 0;
  }
  if (command === 'reference' && rest[0] === 'stop') {
    const stopped = await stopReferenceWorld(stateDir);
    say(stopped.length ? `stopped: ${stopped.join(', ')}` : 'nothing to stop (no process of an earlier start is running)');
    return 0;
  }
  if (command === 'reference' && rest[0] === 'env') {
    process.stdout.write(`export DOCKER_HOST=${dockerHostOf(stateDir)}\n`);
    return 0;
  }
  if (command === 'compare' && rest.length === 2) {
    const differences = await compareImages(rest[0], rest[1]);
    for (const d of differences) process.stdout.write(`${formatDifference(d)}\n`);
    process.stdout.write(`${differences.length} differences\n`);
    return differences.length === 0 ? 0 : 1;
  }
  if (command === 'flatten' && rest.length === 1) {
    process.stdout.write(`${JSON.stringify(await flattenImage(rest[0]), null, 1)}\n`);
    return 0;
  }
  if (command === 'run') return run(rest, stateDir);
  say(USAGE);
  return 2;
}

async function run(dirs: string[], stateDir: string): Promise<number> {
  const buildctl = (process.env['BUILDCTL'] ?? '').split(/\s+/).filter(Boolean);
  if (buildctl.length === 0) throw new Error('Cannot run the cases: set BUILDCTL to the buildctl command line of the project (scripts/conformance.sh run starts a buildd and sets it)');
  const shared = sharedCasesDir();
  if (dirs.length === 0 && !shared) say('../shared/conformance/cases is not there: the shared cases are skipped');
  const cases = dirs.length > 0 ? dirs.map((d) => path.resolve(d)) : [...listCases(OWN_CASES_DIR), ...(shared ? listCases(shared) : [])];
  const outDir = path.resolve(process.env['OUT'] || '/tmp/buildd-conformance-out');
  await fsp.mkdir(outDir, { recursive: true });
  const world = await startReferenceWorld({ stateDir, debian: needsDebian(cases), log: say });
  let passed = 0;
  try {
    for (const dir of cases) {
      const result = await runCase(dir, { world, buildctl, outDir, keepArchives: true });
      if (result.outcome === 'same') passed++;
      process.stdout.write(`${summaryLine(result)}${result.outcome === 'same' ? '' : ` (see ${path.join(outDir, result.name)})`}\n`);
      if (result.outcome !== 'same') process.stdout.write(`${result.detail.split('\n').slice(0, 5).map((l) => `    ${l}`).join('\n')}\n`);
    }
  } finally {
    await world.release();
  }
  process.stdout.write(`${passed} passed, ${cases.length - passed} failed\n`);
  return passed === cases.length ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
