import { spawn, type ChildProcess } from 'node:child_process';
import { z } from 'zod';

/** How a command run by {@link runHostCommand} ended. */
export interface HostCommandResult {
  /** the exit code; null when it was killed by a signal or never ran */
  code: number | null;
  signal: string | null;
  /** the first OUTPUT_CAP bytes of each stream, as UTF-8 */
  stdout: string;
  stderr: string;
  /** why it never ran or its end is unknown (not found, the helper died), when that happened */
  error?: string;
}

/** Where a command runs. */
export interface HostCommandOptions {
  cwd?: string;
}

/** How long a stopped helper may take to exit before it is killed. */
const STOP_GRACE_MS = 5000;

/** The most of each output stream kept: mount, umount, sync and runc say a line or two. */
const OUTPUT_CAP = 64 * 1024;

/**
 * The helper's whole program: runs each command it is sent and posts back how it ended, by id.
 * Plain JavaScript with Node built-ins only, run with `-e`, so the compiled daemon and the
 * TypeScript tests start the same helper.
 */
const HELPER_SOURCE = `
process.title = 'buildd-commands';
const { spawn } = require('node:child_process');
const CAP = ${OUTPUT_CAP};
function collect(stream) {
  const chunks = []; let size = 0;
  stream.on('data', (c) => { if (size < CAP) { chunks.push(c.subarray(0, CAP - size)); size += c.length; } });
  return () => Buffer.concat(chunks).toString('utf8');
}
process.on('message', (m) => {
  let child;
  try {
    child = spawn(m.file, m.args, { cwd: m.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    process.send({ id: m.id, code: null, signal: null, stdout: '', stderr: '', error: String(err && err.message || err) });
    return;
  }
  const out = collect(child.stdout), err = collect(child.stderr);
  let failed;
  child.once('error', (e) => { failed = String(e && e.message || e); });
  child.once('close', (code, signal) => process.send({ id: m.id, code, signal, stdout: out(), stderr: err(), ...(failed !== undefined ? { error: failed } : {}) }));
});
process.on('disconnect', () => process.exit(0));
`;

/** A reply from the helper, checked: it is another process. */
const ReplySchema = z.object({
  id: z.number(),
  code: z.number().nullable(),
  signal: z.string().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  error: z.string().optional(),
});

/**
 * Short host commands (mount, umount, sync, runc delete) run by a small helper process, not
 * spawned by the daemon itself: a spawn forks the spawning process, and forking a daemon of a
 * few hundred MiB blocked its main thread 15-20 ms each time (400 ms of a 4-second build),
 * where the helper's fork blocks only the helper.
 *
 * Lifecycle: started on first use, kept for the process's life, never keeping it alive (unref'd
 * while nothing is pending); `stop()` ends it (the daemon's shutdown waits for that), and it
 * exits by itself if the daemon dies (its IPC channel closes). If it dies, what it was running
 * resolves with `error` set and the next command starts a new one. Its process title is
 * `buildd-commands`.
 */
class HostCommandHelper {
  private child: ChildProcess | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, (res: HostCommandResult) => void>();

  run(file: string, args: readonly string[], opts: HostCommandOptions): Promise<HostCommandResult> {
    const child = this.child ?? this.start();
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.reference();
      child.send({ id, file, args: [...args], cwd: opts.cwd }, (err) => {
        if (err) this.settle(id, { code: null, signal: null, stdout: '', stderr: '', error: `the command helper did not take ${file}: ${err.message}` });
      });
    });
  }

  /** Ends the helper (what it still runs is failed) and waits for it to exit; SIGKILL if it lingers. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.disconnect();
    const lingering = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(lingering);
  }

  /** The helper's pid, started if need be (tests stop it to see a failure handled). */
  pid(): number | undefined {
    return (this.child ?? this.start()).pid;
  }

  private start(): ChildProcess {
    const child = spawn(process.execPath, ['--max-old-space-size=64', '-e', HELPER_SOURCE], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.child = child;
    child.on('message', (msg: unknown) => {
      const reply = ReplySchema.safeParse(msg);
      if (!reply.success) return;
      const { id, ...res } = reply.data;
      this.settle(id, res);
    });
    const gone = (why: string): void => {
      if (this.child !== child) return;
      this.child = undefined;
      for (const id of [...this.pending.keys()]) this.settle(id, { code: null, signal: null, stdout: '', stderr: '', error: why });
    };
    child.once('error', (err) => gone(`the command helper failed: ${err.message}`));
    child.once('exit', (code, signal) => gone(`the command helper exited (${signal ?? `code ${code}`}) before the command ended`));
    child.unref();
    this.unreference();
    return child;
  }

  private settle(id: number, res: HostCommandResult): void {
    const resolve = this.pending.get(id);
    if (!resolve) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.unreference();
    resolve(res);
  }

  // A pending command keeps the process alive, as a spawned child would; an idle helper does not.
  private reference(): void {
    (this.child?.channel as { ref?: () => void } | undefined)?.ref?.();
  }

  private unreference(): void {
    (this.child?.channel as { unref?: () => void } | undefined)?.unref?.();
  }
}

const helper = new HostCommandHelper();

/** Runs `file` with `args` to its end through the helper (see HostCommandHelper). Never rejects. */
export function runHostCommand(file: string, args: readonly string[], opts: HostCommandOptions = {}): Promise<HostCommandResult> {
  return helper.run(file, args, opts);
}

/** An error of a command that failed, shaped as execFile's: `stderr` and `code` are there to read. */
export class HostCommandError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'HostCommandError';
  }
}

/** {@link runHostCommand} as execFile: resolves with the output of a zero exit, rejects with a HostCommandError otherwise. */
export async function execHostCommand(file: string, args: readonly string[], opts: HostCommandOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const res = await runHostCommand(file, args, opts);
  if (res.code === 0 && res.error === undefined) return { stdout: res.stdout, stderr: res.stderr };
  const how = res.error ?? (res.signal !== null ? `killed by ${res.signal}` : `exit code ${res.code}`);
  throw new HostCommandError(`Command failed: ${[file, ...args].join(' ')}: ${how}`, res.code, res.stdout, res.stderr || how);
}

/** Ends the helper and waits for it to exit (the daemon's shutdown): a later command starts another. */
export function stopHostCommandHelper(): Promise<void> {
  return helper.stop();
}

/** The helper's pid (started if need be): for tests. */
export function hostCommandHelperPid(): number | undefined {
  return helper.pid();
}
