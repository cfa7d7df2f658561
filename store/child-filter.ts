import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { BuildError } from '../solver/build-error';

const MAX_STDERR = 4096;

/**
 * A program that reads stdin and writes stdout (`zstd -c`, `zstd -dc`) as a Duplex stream:
 * what is written goes to its stdin, what it prints is read. Backpressure holds both ways
 * (a full pipe pauses the writer, a slow reader pauses the program's stdout), so nothing is
 * held in memory.
 *
 * Lifecycle: the process starts at once. The readable side ends only after the process exited
 * with code 0; a program that cannot be started, crashes or exits non-zero makes the stream
 * fail instead (a BuildError naming `what`), so a consumer such as the content store never
 * commits its truncated output. Destroying the stream kills the process.
 */
export function childFilter(command: string, args: readonly string[], what: string): Duplex {
  // The program is looked up in this env's PATH (explicit, so a caller's own env is the one searched).
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
  let stderr = '';
  let failure: Error | undefined;
  const exited = new Promise<Error | undefined>((resolve) => {
    child.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? `${command} is not installed (install the Debian package ${command})` : err.message;
      resolve(new BuildError('failed-precondition', `Cannot ${what}: ${why}`, { cause: err }));
    });
    child.on('close', (code, sig) => {
      if (code === 0) resolve(undefined);
      const how = sig ? `was killed by ${sig}` : `exited with code ${code}`;
      const said = stderr.trim().slice(0, 500);
      resolve(new BuildError('internal', `Cannot ${what}: ${command} ${how}${said ? `: ${said}` : ''}`));
    });
  });
  const stdin = child.stdin;
  const stdout = child.stdout;
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < MAX_STDERR) stderr += d.toString('utf8');
  });
  // A program that dies early closes its stdin (EPIPE): the exit status says why.
  stdin.on('error', () => undefined);

  const duplex = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (failure) return cb(failure);
      if (stdin.write(chunk)) return cb();
      const done = (): void => {
        stdin.off('drain', done);
        stdin.off('close', done);
        cb(failure);
      };
      stdin.on('drain', done);
      stdin.on('close', done);
    },
    final(cb) {
      stdin.end();
      cb();
    },
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      stdout.destroy();
      stdin.destroy();
      cb(err);
    },
  });
  stdout.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) stdout.pause();
  });
  stdout.on('end', () => {
    void exited.then((err) => {
      if (err) duplex.destroy(err);
      else duplex.push(null);
    });
  });
  void exited.then((err) => {
    if (!err) return;
    failure = err;
    // Not started at all, or dead while its output was still being read.
    if (!duplex.destroyed) duplex.destroy(err);
  });
  return duplex;
}
