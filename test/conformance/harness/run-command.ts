import { spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

/** How a command ended and the tail of what it printed. A plain value. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCommandOptions {
  env?: NodeJS.ProcessEnv;
  /** Both outputs are also appended to this file, whole (the result keeps only their tails). */
  logFile?: string;
  /** The command is killed (SIGKILL) after this long; default 10 minutes. */
  timeoutMs?: number;
}

/** What a result keeps of each output: a build log can be long, its end says why it failed. */
const TAIL_CHARS = 64 * 1024;

/** Runs a command to its end, whatever its exit status. A command that cannot start rejects. */
export async function runCommand(cmd: string, args: readonly string[], opts: RunCommandOptions = {}): Promise<CommandResult> {
  let log: WriteStream | undefined;
  if (opts.logFile !== undefined) {
    const file = createWriteStream(opts.logFile, { flags: 'a' });
    await new Promise<void>((resolve, reject) => file.once('open', () => resolve()).once('error', reject));
    file.write(`$ ${[cmd, ...args].join(' ')}\n`);
    log = file;
  }
  try {
    return await new Promise<CommandResult>((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
      let stdout = '';
      let stderr = '';
      const keep = (have: string, d: Buffer): string => (have + d.toString()).slice(-TAIL_CHARS);
      child.stdout.on('data', (d: Buffer) => {
        stdout = keep(stdout, d);
        log?.write(d);
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr = keep(stderr, d);
        log?.write(d);
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`Cannot run ${cmd}: ${err.message}`, { cause: err }));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
  } finally {
    if (log) await new Promise<void>((resolve) => (log as WriteStream).end(() => resolve()));
  }
}

/** Runs a command that must succeed: a non-zero exit rejects with `Cannot <what>: ...` and its stderr's end. */
export async function mustRun(what: string, cmd: string, args: readonly string[], opts: RunCommandOptions = {}): Promise<CommandResult> {
  const res = await runCommand(cmd, args, opts);
  if (res.code !== 0) {
    const why = (res.stderr.trim() || res.stdout.trim()).slice(-2000);
    throw new Error(`Cannot ${what}: ${cmd} ${res.signal ? `was killed by ${res.signal}` : `exited with ${res.code}`}${why ? `: ${why}` : ''}${opts.logFile ? ` (log: ${opts.logFile})` : ''}`);
  }
  return res;
}
