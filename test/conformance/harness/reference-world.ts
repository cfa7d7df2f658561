import { constants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { ensureBaseImages } from './base-images';
import { startOwned, stopOwned, type OwnedProcess } from './owned-process';
import { runCommand, type CommandResult, type RunCommandOptions } from './run-command';

/** The registry's address: fixed, since the cases say `FROM localhost:5000/...`. */
export const REGISTRY = '127.0.0.1:5000';
/** Debian's docker client (docker.io): a docker elsewhere on PATH may be another one. */
export const DOCKER = '/usr/bin/docker';
export const DOCKERD = '/usr/sbin/dockerd';
export const DEFAULT_STATE_DIR = '/var/tmp/buildd-conformance';

export interface ReferenceWorldOptions {
  /** Where dockerd's data, the registry's storage, logs and pid files live (default {@link DEFAULT_STATE_DIR}). */
  stateDir?: string;
  /** Also push localhost:5000/debian:bookworm (debootstrap, minutes the first time). */
  debian?: boolean;
  /** Progress for a person: what is being started or made. */
  log?: (line: string) => void;
}

/**
 * The reference builder's world on this machine: Debian's docker-registry serving
 * 127.0.0.1:5000 with the base images, and Debian's dockerd (whose builder is BuildKit) on a
 * socket and data root of its own, touching nothing else on the machine.
 *
 * Lifecycle: {@link startReferenceWorld} starts what is not already serving (a registry on
 * :5000 or a dockerd on the socket are used as they are, whoever started them) and returns
 * once both answer and the base images are in the registry; `release()` stops what that call
 * started, and nothing else. {@link stopReferenceWorld} stops what any earlier start left running.
 */
export interface ReferenceWorld {
  stateDir: string;
  /** `unix://.../docker.sock`, for DOCKER_HOST */
  dockerHost: string;
  registry: string;
  /** What this start started ('registry', 'dockerd'); empty when all was serving. */
  started: string[];
  /** Runs Debian's docker client against this dockerd. */
  docker(args: readonly string[], opts?: RunCommandOptions): Promise<CommandResult>;
  release(): Promise<void>;
}

function files(stateDir: string): { socket: string; registryPid: string; dockerdPid: string } {
  return {
    socket: path.join(stateDir, 'docker.sock'),
    registryPid: path.join(stateDir, 'registry.pid'),
    dockerdPid: path.join(stateDir, 'dockerd.pid'),
  };
}

/** The DOCKER_HOST value of the reference dockerd of `stateDir` (the CLI's `reference env`). */
export function dockerHostOf(stateDir = DEFAULT_STATE_DIR): string {
  return `unix://${files(stateDir).socket}`;
}

export async function startReferenceWorld(opts: ReferenceWorldOptions = {}): Promise<ReferenceWorld> {
  const stateDir = path.resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
  const log = opts.log ?? (() => undefined);
  const f = files(stateDir);
  const dockerHost = `unix://${f.socket}`;
  const docker = (args: readonly string[], o: RunCommandOptions = {}): Promise<CommandResult> =>
    runCommand(DOCKER, args, { ...o, env: { ...process.env, ...o.env, DOCKER_HOST: dockerHost } });
  await requirePrograms(opts.debian === true);
  await fsp.mkdir(stateDir, { recursive: true });
  const started: string[] = [];
  const release = async (): Promise<void> => {
    if (started.includes('dockerd')) await stopOwned(f.dockerdPid, 'dockerd', stateDir, 30_000);
    if (started.includes('registry')) await stopOwned(f.registryPid, 'docker-registry', stateDir, 10_000);
    started.length = 0;
  };
  try {
    if (!(await registryServes())) {
      log(`starting docker-registry on ${REGISTRY} (storage ${path.join(stateDir, 'registry')})`);
      const config = path.join(stateDir, 'registry.yml');
      await fsp.writeFile(config, [
        'version: 0.1',
        'log: {level: warn}',
        `storage: {filesystem: {rootdirectory: ${path.join(stateDir, 'registry')}}, delete: {enabled: true}}`,
        `http: {addr: ${REGISTRY}}`,
        '',
      ].join('\n'));
      const proc = await startOwned('docker-registry', ['serve', config], path.join(stateDir, 'registry.log'), f.registryPid);
      started.push('registry');
      await until(`docker-registry on ${REGISTRY}`, proc, path.join(stateDir, 'registry.log'), registryServes, 30_000);
    }
    if (!(await dockerdServes(docker))) {
      log(`starting dockerd on ${dockerHost} (data root ${path.join(stateDir, 'dockerd')})`);
      const args = [
        '--data-root', path.join(stateDir, 'dockerd'),
        '--exec-root', path.join(stateDir, 'exec'),
        '-H', dockerHost,
        '--pidfile', path.join(stateDir, 'exec', 'dockerd.pid'),
        // no bridge, no firewall rules: the builds run --network=none, the host's network is left as it is
        '--iptables=false', '--ip-masq=false', '--bridge=none',
      ];
      const proc = await startOwned(DOCKERD, args, path.join(stateDir, 'dockerd.log'), f.dockerdPid);
      started.push('dockerd');
      await until(`dockerd on ${dockerHost}`, proc, path.join(stateDir, 'dockerd.log'), () => dockerdServes(docker), 90_000);
    }
    await ensureBaseImages({ stateDir, registry: REGISTRY, docker, log }, opts.debian === true);
  } catch (err) {
    await release();
    throw err;
  }
  return { stateDir, dockerHost, registry: REGISTRY, started: [...started], docker, release };
}

/** Stops what earlier starts in `stateDir` left running (their pid files). Gives what it stopped. */
export async function stopReferenceWorld(stateDir = DEFAULT_STATE_DIR): Promise<string[]> {
  const dir = path.resolve(stateDir);
  const f = files(dir);
  const stopped: string[] = [];
  if (await stopOwned(f.dockerdPid, 'dockerd', dir, 30_000)) stopped.push('dockerd');
  if (await stopOwned(f.registryPid, 'docker-registry', dir, 10_000)) stopped.push('registry');
  return stopped;
}

async function registryServes(): Promise<boolean> {
  try {
    const res = await request(`http://${REGISTRY}/v2/`, { headersTimeout: 2000, bodyTimeout: 2000 });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

async function dockerdServes(docker: ReferenceWorld['docker']): Promise<boolean> {
  const res = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 });
  return res.code === 0;
}

/** Polls `ready` until it holds; fails at once, with the log's end, when the process exits first. */
async function until(what: string, proc: OwnedProcess, logFile: string, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ready()) return;
    const tail = async (): Promise<string> => (await fsp.readFile(logFile, 'utf8').catch(() => '')).slice(-3000);
    if (proc.exited()) throw new Error(`Cannot start ${what}: it exited:\n${await tail()}`);
    if (Date.now() > deadline) throw new Error(`Cannot start ${what}: not serving after ${timeoutMs} ms:\n${await tail()}`);
    await delay(100);
  }
}

/** Fails with what to install when a program of the reference world is missing. */
async function requirePrograms(debian: boolean): Promise<void> {
  const missing: string[] = [];
  const executable = (p: string): Promise<boolean> => fsp.access(p, constants.X_OK).then(() => true, () => false);
  const onPath = async (cmd: string): Promise<boolean> => {
    for (const dir of (process.env['PATH'] ?? '').split(':')) if (dir && (await executable(path.join(dir, cmd)))) return true;
    return false;
  };
  if (!(await executable(DOCKERD)) || !(await executable(DOCKER))) missing.push('docker.io');
  if (!(await onPath('docker-registry'))) missing.push('docker-registry');
  if (!(await onPath('busybox'))) missing.push('busybox-static');
  if (debian && !(await onPath('debootstrap'))) missing.push('debootstrap');
  if (missing.length > 0) {
    throw new Error(`Cannot start the reference world: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not installed (apt-get install ${missing.join(' ')}, or bash scripts/install-system-deps.sh)`);
  }
}
