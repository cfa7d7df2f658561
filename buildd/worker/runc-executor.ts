import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { BuildError } from '../../solver/build-error';
import { resolveUser } from '../../store/passwd';
import { cleanAbsolute } from '../../store/safe-path';
import { ensureCwd } from './ensure-cwd';
import { readHostPrivileges } from './host-privileges';
import type { InsecureHost } from './insecure-spec';
import { writeEtcFiles } from './etc-files';
import type { ExecRequest, ExecResult, Executor } from './executor';
import { recordMountStubs } from './mount-stubs';
import { DEFAULT_HOSTNAME } from './oci-defaults';
import { buildOciSpec, mountDestinations, type OciSpec } from './oci-spec';
import { isProcMountFailure, MASKED_PROC_HINT, type ProcessMode } from './process-mode';
import { runRuncCommand } from './runc-command';
import { readRuncErrors } from './runc-log';
import { detectCgroupHost, linuxResources, type CgroupHost, type StepLimits } from './step-limits';
import { killStepProcesses, waitForInitExit } from './step-processes';

export interface RuncExecutorOptions {
  /** passed as `runc --root`: runc's state of the containers; buildd owns everything in it */
  runcRoot: string;
  /** bundles live here, one `<stateDir>/<id>` per running container */
  stateDir: string;
  runcBinary?: string;
  logger?: pino.Logger;
  /** the host file the container's nameservers come from; /etc/resolv.conf by default */
  hostResolvConf?: string;
  /** cgroup parent of the containers (cgroupfs driver); /buildd by default, none when rootless */
  cgroupParent?: string;
  /** cgroup limits of every step (the daemon's `stepLimits`); none by default */
  stepLimits?: StepLimits;
  /**
   * buildd --rootless: without a cgroupParent no cgroup path in the spec, as runc skips cgroups
   * it is denied only for a container without one; stepLimits then must be empty. With one (a
   * parent delegated to the user, checked by prepareRootlessCgroupParent) as a root daemon.
   */
  rootless?: boolean;
  /**
   * 'no-sandbox' (`--oci-worker-no-process-sandbox`): steps share the daemon's PID namespace;
   * their processes are then killed by mount namespace when the step ends (see step-processes.ts)
   */
  processMode?: ProcessMode;
}

interface RunningContainer {
  abort(reason: BuildError): void;
  settled: Promise<unknown>;
}

/** runc's own rule for container ids */
const ID_PATTERN = /^[A-Za-z0-9_+.-]{1,128}$/;
/** how often a kill is retried while runc is still creating the container */
const KILL_RETRY_MS = 50;
/** after this long without the container going away, the runc process itself is killed */
const KILL_DEADLINE_MS = 10_000;
/** 'no-sandbox': how often a step's init is looked at (see waitForInitExit); the most a step's end is delayed */
const INIT_POLL_MS = 50;

/** Runs each RUN step with `runc run` in a bundle under `stateDir`; see `Executor` for the lifecycle. */
export class RuncExecutor implements Executor {
  private readonly runcRoot: string;
  private readonly stateDir: string;
  private readonly binary: string;
  private readonly log: pino.Logger;
  private readonly hostResolvConf: string;
  private readonly cgroupParent: string | undefined;
  private readonly stepLimits: StepLimits;
  private readonly processMode: ProcessMode;
  private cgroupHost?: Promise<CgroupHost>;
  private readonly running = new Map<string, RunningContainer>();
  private closed = false;
  private privileges?: Promise<InsecureHost>;

  constructor(opts: RuncExecutorOptions) {
    this.runcRoot = path.resolve(opts.runcRoot);
    this.stateDir = path.resolve(opts.stateDir);
    this.binary = opts.runcBinary ?? 'runc';
    this.log = opts.logger ?? pino({ enabled: false });
    this.hostResolvConf = opts.hostResolvConf ?? '/etc/resolv.conf';
    const parent = opts.cgroupParent ?? (opts.rootless ? undefined : '/buildd');
    this.cgroupParent = parent === undefined ? undefined : cleanAbsolute(parent);
    this.stepLimits = { ...opts.stepLimits };
    this.processMode = opts.processMode ?? 'sandbox';
  }

  async run(req: ExecRequest): Promise<ExecResult> {
    if (this.closed) throw new BuildError('unavailable', 'Cannot run a container: the executor is closed');
    if (req.args.length === 0) throw new BuildError('invalid-argument', 'Cannot run a container: no command given');
    const id = req.id ?? `buildd-${randomBytes(12).toString('hex')}`;
    if (!ID_PATTERN.test(id)) throw new BuildError('invalid-argument', `Cannot run container ${JSON.stringify(id)}: invalid id`);
    // a second run with the same id would end by deleting the first one's container
    if (this.running.has(id)) throw new BuildError('invalid-argument', `Cannot run container ${id}: the id is in use`);
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(new BuildError('cancelled', `Cannot run ${describe(req.args)}: the step was cancelled`));
    const settled = this.runContainer(id, req, controller.signal);
    this.running.set(id, { abort: (reason) => controller.abort(reason), settled: settled.catch(() => undefined) });
    if (req.signal?.aborted) onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await settled;
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      this.running.delete(id);
    }
  }

  /**
   * Deletes the containers and bundles a previous daemon left behind (after a kill -9): at
   * start no container of ours can be legitimately running. Call once, before the first run.
   * When runc cannot list them, a warning names the container state directories left in
   * `runcRoot` and why, and the daemon goes on (it can still build; those containers are not
   * deleted).
   */
  async sweep(): Promise<string[]> {
    await fsp.mkdir(this.runcRoot, { recursive: true, mode: 0o700 });
    const listed = await runRuncCommand(this.binary, ['--root', this.runcRoot, 'list', '-q']);
    if (listed.code !== 0) {
      // Not fatal: the daemon can still build, but what a killed daemon left keeps running
      // and holding its rootfs mounts. runc keeps one state directory per container.
      const left = (await fsp.readdir(this.runcRoot).catch(() => [])).sort();
      const reason = `${listed.code === null ? 'could not run' : `exit code ${listed.code}`}: ${listed.stderr.trim().slice(0, 500)}`;
      this.log.warn(
        { runcRoot: this.runcRoot, containers: left, reason },
        `Cannot delete the containers a previous daemon left: runc list failed (${reason}); not deleted: ${left.length > 0 ? left.join(', ') : 'none known'}`,
      );
    }
    const ids = listed.code === 0 ? listed.stdout.split('\n').map((l) => l.trim()).filter((l) => l.length > 0) : [];
    for (const id of ids) await this.deleteContainer(id);
    await fsp.rm(this.stateDir, { recursive: true, force: true });
    await fsp.mkdir(this.stateDir, { recursive: true });
    return ids;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.running.values()];
    for (const c of all) c.abort(new BuildError('cancelled', 'Cannot finish the step: the daemon is shutting down'));
    await Promise.all(all.map((c) => c.settled));
  }

  /** read on the first insecure step: the daemon's capabilities and devices do not change while it runs */
  private hostPrivileges(): Promise<InsecureHost> {
    this.privileges ??= readHostPrivileges().catch((err: unknown) => {
      this.privileges = undefined;
      throw new BuildError('internal', `Cannot run an insecure step: cannot read the daemon's capabilities: ${(err as Error).message}`);
    });
    return this.privileges;
  }

  private async runContainer(id: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    // let run() register the container before any work (and any abort) happens
    await Promise.resolve();
    if (signal.aborted) throw signal.reason;
    const user = await resolveUser(req.rootfs, req.user);
    const cwd = cleanAbsolute(req.cwd || '/');
    const bundle = path.join(this.stateDir, id);
    await fsp.mkdir(this.stateDir, { recursive: true, mode: 0o711 });
    // not recursive: an existing bundle means a clash, and it is not ours to remove
    await fsp.mkdir(bundle, { mode: 0o700 });
    try {
      const hostname = req.hostname ?? DEFAULT_HOSTNAME;
      const hostNetwork = req.network === 'host';
      const etcFiles = await writeEtcFiles(bundle, hostname, this.hostResolvConf, undefined, { hostNetwork });
      // the host's cgroups do not change while the daemon runs: look once
      const resources = linuxResources(this.stepLimits, await (this.cgroupHost ??= detectCgroupHost()));
      const spec = buildOciSpec({
        rootfs: path.resolve(req.rootfs),
        args: req.args,
        env: req.env,
        cwd,
        user,
        hostname,
        cgroupsPath: this.cgroupParent === undefined ? undefined : path.posix.join(this.cgroupParent, id),
        etcFiles,
        extraMounts: req.mounts,
        // a CNI sandbox's namespace when NetworkedExecutor set one; else loopback only
        netnsPath: req.network === 'sandbox' ? req.netnsPath : undefined,
        hostNetwork,
        insecure: req.security === 'insecure' ? await this.hostPrivileges() : undefined,
        resources,
        sessionMounts: req.sessionMounts,
        processMode: this.processMode,
      });
      await writeSpec(bundle, spec, req);
      await ensureCwd(req.rootfs, cwd, user);
      const cleanStubs = await recordMountStubs(req.rootfs, mountDestinations(spec), { logger: this.log });
      let result: ExecResult;
      try {
        result = await this.runRunc(id, bundle, req, signal);
      } catch (err) {
        await this.deleteContainer(id);
        // the step failed: its rootfs is thrown away, stubs and all; its own error is the news
        await cleanStubs().catch((stubErr: unknown) => this.log.warn({ id, err: (stubErr as Error).message }, 'mount stubs left in the rootfs of a failed step'));
        throw err;
      }
      await this.deleteContainer(id);
      if (result.exitCode === 0) {
        // a stub left behind would end up in the layer: the step fails
        await cleanStubs();
      } else {
        // the step fails on its exit code, which says more than the stubs
        await cleanStubs().catch((stubErr: unknown) => this.log.warn({ id, exitCode: result.exitCode, err: (stubErr as Error).message }, 'mount stubs left in the rootfs of a failed step'));
      }
      return result;
    } finally {
      await fsp.rm(bundle, { recursive: true, force: true });
    }
  }

  /** `runc run` in the foreground; settles once the container's process has exited and its output is delivered. */
  private async runRunc(id: string, bundle: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    if (signal.aborted) throw signal.reason;
    const logFile = path.join(bundle, 'runc.log');
    const pidFile = path.join(bundle, 'init.pid');
    const noSandbox = this.processMode === 'no-sandbox';
    const args = ['--root', this.runcRoot, '--log', logFile, '--log-format', 'json', 'run', '--bundle', bundle, ...(noSandbox ? ['--pid-file', pidFile] : []), id];
    this.log.debug({ id, args: req.args }, 'starting container');
    const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = new Promise<{ code: number | null; sig: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
      child.once('error', (err) => resolve({ code: null, sig: null, spawnError: err }));
      // 'close', not 'exit': it comes after stdout/stderr ended, so all output has been piped
      child.once('close', (c, s) => resolve({ code: c, sig: s }));
    });
    if (noSandbox) {
      // the step is over when its init is: what it left in the background holds runc's output
      // pipes, so runc (and 'close') end only once those processes are gone
      const runcExited = new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', () => resolve());
      });
      void waitForInitExit(id, pidFile, runcExited, INIT_POLL_MS).then(async () => {
        if (child.exitCode === null && child.signalCode === null) await this.killLeftProcesses(id, child);
      });
    }
    let killer: Promise<void> | undefined;
    const stop = (): void => {
      killer ??= this.killContainer(id, child, ended.then(() => undefined));
    };
    let outputError: Error | undefined;
    const onOutputError = (err: Error): void => {
      // a broken destination stops reading, which would block the process forever: stop it,
      // and drain what is left so that runc's pipes end and 'close' can come
      outputError ??= err;
      for (const [from, to] of [[child.stdout, req.stdout], [child.stderr, req.stderr]] as const) {
        from.unpipe(to);
        from.resume();
      }
      stop();
    };
    // end: false — the streams belong to the caller, who may write more after this step
    child.stdout.pipe(req.stdout, { end: false });
    child.stderr.pipe(req.stderr, { end: false });
    req.stdout.once('error', onOutputError);
    req.stderr.once('error', onOutputError);
    signal.addEventListener('abort', stop, { once: true });
    let exited = false;
    try {
      const { code, sig, spawnError } = await ended;
      exited = true;
      await killer;
      if (signal.aborted) throw signal.reason;
      if (outputError) throw new BuildError('internal', `Cannot stream the output of ${describe(req.args)}: ${outputError.message}`);
      if (spawnError) throw new BuildError('internal', `Cannot start ${this.binary}: ${spawnError.message}`, { cause: spawnError });
      const runcErrors = code === 0 ? [] : await readRuncErrors(logFile);
      if (runcErrors.length > 0) {
        const msg = runcErrors[runcErrors.length - 1] as string;
        // the daemon's setting, not the Dockerfile: say which flag makes the step run
        if (this.processMode === 'sandbox' && isProcMountFailure(msg)) {
          throw new BuildError('failed-precondition', `Cannot run ${describe(req.args)}: ${msg}: ${MASKED_PROC_HINT}`);
        }
        // a command that cannot be started, or a cwd that is a file, is the Dockerfile's fault;
        // anything else (mounts, cgroups, namespaces) is ours. runc's own message is also on stderr.
        const kind = /exec: "|executable file not found|chdir to cwd/.test(msg) ? 'invalid-argument' : 'internal';
        throw new BuildError(kind, `Cannot run ${describe(req.args)}: ${msg}`);
      }
      if (code === null) throw new BuildError('internal', `Cannot run ${describe(req.args)}: runc was killed by ${sig ?? 'a signal'}`);
      this.log.debug({ id, exitCode: code }, 'container exited');
      return { exitCode: code };
    } finally {
      signal.removeEventListener('abort', stop);
      req.stdout.removeListener('error', onOutputError);
      req.stderr.removeListener('error', onOutputError);
      child.stdout.unpipe(req.stdout);
      child.stderr.unpipe(req.stderr);
      if (!exited) child.kill('SIGKILL');
    }
  }

  /**
   * SIGKILLs the container and waits for `runc run` to exit. While runc is still creating the
   * container, `runc kill` finds nothing, so it is retried; should runc itself hang, it is
   * killed after a deadline (the `delete --force` that always follows removes the rest).
   */
  private async killContainer(id: string, child: ChildProcess, ended: Promise<void>): Promise<void> {
    let done = false;
    void ended.then(() => (done = true));
    const deadline = Date.now() + KILL_DEADLINE_MS;
    while (!done && Date.now() < deadline) {
      const res = await runRuncCommand(this.binary, ['--root', this.runcRoot, 'kill', id, 'KILL']);
      if (res.code === 0) {
        await waitAtMost(ended, Math.max(0, deadline - Date.now()));
      } else {
        this.log.debug({ id, stderr: res.stderr.trim() }, 'runc kill failed, retrying');
        await waitAtMost(ended, KILL_RETRY_MS);
      }
    }
    if (!done) {
      this.log.warn({ id }, 'runc did not exit after kill; killing runc');
      child.kill('SIGKILL');
    }
  }

  /**
   * 'no-sandbox': kills what the step left running in the daemon's PID namespace. Should some
   * process survive the deadline (or /proc be unreadable), runc, which waits for the output
   * pipes that process holds, is killed and its pipes let go, so that the step still ends.
   */
  private async killLeftProcesses(id: string, child?: ChildProcess): Promise<void> {
    const left = await killStepProcesses(id, KILL_DEADLINE_MS).catch((err: unknown) => {
      this.log.warn({ id, err: (err as Error).message }, 'Cannot look for the processes a step left: reading /proc failed');
      return undefined;
    });
    if (left === undefined || left.length > 0) {
      if (left) this.log.warn({ id, pids: left }, 'processes of a step are still running after SIGKILL');
      child?.kill('SIGKILL');
      child?.stdout?.destroy();
      child?.stderr?.destroy();
    }
  }

  /** `runc delete --force`: kills what is left and removes runc's state and the cgroup. */
  private async deleteContainer(id: string): Promise<void> {
    // without a PID namespace (or a cgroup) runc reaches only the init: the rest is ours to kill
    if (this.processMode === 'no-sandbox') await this.killLeftProcesses(id);
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await runRuncCommand(this.binary, ['--root', this.runcRoot, 'delete', '--force', id]);
      if (res.code === 0) return;
      this.log.warn({ id, stderr: res.stderr.trim(), attempt }, 'Cannot delete container: runc delete failed');
    }
  }
}

/**
 * Writes `<bundle>/config.json`. With secret variables in the environment, the file goes to the
 * caller's tmpfs directory and the bundle gets a symlink to it (runc follows it), so no secret
 * value is written under the daemon's root.
 */
async function writeSpec(bundle: string, spec: OciSpec, req: ExecRequest): Promise<void> {
  const secretEnv = req.secretEnv ?? [];
  if (secretEnv.length === 0) {
    await fsp.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
    return;
  }
  if (req.privateDir === undefined) throw new BuildError('internal', 'Cannot pass secrets to the step: no private directory for its config');
  const names = new Set(secretEnv.map((e) => e.slice(0, e.indexOf('='))));
  spec.process.env = [...spec.process.env.filter((e) => !names.has(e.slice(0, e.indexOf('=')))), ...secretEnv];
  const file = path.join(req.privateDir, 'config.json');
  // wx: a file already there is not ours to fill with secrets
  await fsp.writeFile(file, JSON.stringify(spec), { mode: 0o600, flag: 'wx' });
  await fsp.symlink(file, path.join(bundle, 'config.json'));
}

function describe(args: readonly string[]): string {
  return JSON.stringify(args);
}

/** Waits for `p` or `ms`, whichever comes first, and leaves no timer behind. */
async function waitAtMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
