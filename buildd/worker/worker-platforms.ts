import { BuildError } from '../../solver/build-error';
import { hostPlatform, parsePlatform, platformId, type Platform } from '../../store/platforms';
import { BINFMT_DIR, emulatedPlatforms, missingEmulatorMessage, runnablePlatforms, type EmulatedPlatform } from './binfmt-platforms';

/**
 * The platforms this worker builds for: its own (BUILDPLATFORM) and every one whose steps it
 * can run, natively or through an emulator registered in binfmt_misc. Detected once at daemon
 * start (detectWorkerPlatforms): an emulator registered later is used after a restart.
 */
export interface WorkerPlatforms {
  /** the host's platform, normalized: a build's BUILDPLATFORM and default target */
  build: Platform;
  /** what RUN steps can run as, the native ones first (`buildctl debug workers` lists them) */
  runnable: Platform[];
  /** the binfmt_misc handlers found, with or without the F flag (for the error's advice) */
  emulated: EmulatedPlatform[];
  /** the binfmt_misc folder read */
  dir: string;
}

/** Reads binfmt_misc (`dir`, default /proc/sys/fs/binfmt_misc) once. */
export async function detectWorkerPlatforms(dir: string = BINFMT_DIR, build: Platform = hostPlatform()): Promise<WorkerPlatforms> {
  const emulated = await emulatedPlatforms(dir);
  return { build, runnable: runnablePlatforms(build, emulated), emulated, dir };
}

/**
 * Fails before anything runs when a step's platform (`os/arch[/variant]`, normalized, as an
 * exec op carries it) is not one the worker can run: the error names the emulator missing and
 * the Debian package that has it. BuildKit lets such a step fail with `exec format error`.
 */
export function checkRunnable(platforms: WorkerPlatforms, stepPlatforms: Iterable<string>): void {
  const runnable = new Set(platforms.runnable.map((p) => platformId(p)));
  for (const wanted of new Set(stepPlatforms)) {
    if (runnable.has(wanted)) continue;
    throw new BuildError('failed-precondition', missingEmulatorMessage(parsePlatform(wanted), platforms.build, { registered: platforms.emulated, dir: platforms.dir }));
  }
}
