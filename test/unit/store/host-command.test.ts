import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execHostCommand, hostCommandHelperPid, runHostCommand, stopHostCommandHelper } from '../../../store/host-command';

/**
 * Host commands run through the helper process: what they print and how they end come back to
 * the right caller, a failure reads as execFile's, and a helper that dies fails what it was
 * running and is replaced for the next command.
 */
test('returns output and exit code of each of many concurrent commands to its own caller', async () => {
  const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => runHostCommand('sh', ['-c', `echo out${i}; echo err${i} >&2; exit ${i % 4}`])));
  runs.forEach((res, i) => {
    expect(res).toEqual({ code: i % 4, signal: null, stdout: `out${i}\n`, stderr: `err${i}\n` });
  });
});

test('runs in the directory asked for', async () => {
  const dir = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'host-command-')));
  try {
    expect((await execHostCommand('pwd', [], { cwd: dir })).stdout).toBe(`${dir}\n`);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('a failing command rejects as execFile does, with its stderr and code; a missing one says so', async () => {
  await expect(execHostCommand('sh', ['-c', 'echo "mount: nope" >&2; exit 32'])).rejects.toMatchObject({ code: 32, stderr: 'mount: nope\n' });
  const missing = await runHostCommand('/nonexistent/buildd-no-such-binary', []);
  expect(missing.code).not.toBe(0);
  expect(missing.error).toMatch(/ENOENT/);
  await expect(execHostCommand('/nonexistent/buildd-no-such-binary', [])).rejects.toThrow(/ENOENT/);
});

test('keeps only the first 64 KiB of a stream', async () => {
  const res = await runHostCommand('sh', ['-c', 'head -c 200000 /dev/zero | tr "\\0" a']);
  expect(res.code).toBe(0);
  expect(res.stdout.length).toBe(64 * 1024);
});

test('a helper that dies fails the command it was running, and the next command gets a new helper', async () => {
  const pid = hostCommandHelperPid() as number;
  const running = runHostCommand('sleep', ['30']);
  // the sleep has started once the helper has a child
  const deadline = Date.now() + 10_000;
  let sleeper = '';
  while (!(sleeper = (await fsp.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim())) {
    if (Date.now() > deadline) throw new Error('the helper never started sleep');
    await new Promise((r) => setTimeout(r, 20));
  }
  process.kill(pid, 'SIGKILL');
  process.kill(Number(sleeper.split(' ')[0]), 'SIGKILL');
  const res = await running;
  expect(res.code).toBeNull();
  expect(res.error).toMatch(/command helper exited \(SIGKILL\)/);
  expect((await execHostCommand('echo', ['again'])).stdout).toBe('again\n');
  expect(hostCommandHelperPid()).not.toBe(pid);
});

test('stop ends the helper and waits for its exit; the next command starts another', async () => {
  const pid = hostCommandHelperPid() as number;
  expect(await fsp.readFile(`/proc/${pid}/comm`, 'utf8')).toBe('buildd-commands\n');
  await stopHostCommandHelper();
  expect(await fsp.readFile(`/proc/${pid}/status`, 'utf8').catch(() => 'gone')).toBe('gone');
  expect((await execHostCommand('echo', ['after'])).stdout).toBe('after\n');
  await stopHostCommandHelper();
});
