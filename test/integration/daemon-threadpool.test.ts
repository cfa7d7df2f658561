import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import * as path from 'node:path';
import { defaultThreadpoolSize } from '../../buildd/uv-threadpool';
import { ensureBuilt } from '../helpers/daemon';

const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'buildd', 'main.js');

/**
 * Preloaded into `buildd --version`: when main.js loads run-daemon (the first module that may
 * use the threadpool), start the pool with one call and count the process's threads. libuv
 * creates all its threads on that first call, so the count shows the size it took.
 */
const HOOK = `
const fs = require('fs');
const Module = require('module');
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === './run-daemon') {
    fs.stat('/', () => undefined);
    process.stderr.write('threads ' + fs.readdirSync('/proc/self/task').length + '\\n');
  }
  return load.call(this, request, ...rest);
};
`;

describe('buildd sizes the libuv threadpool', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(path.join(tmpdir(), 'buildd-threadpool-'));
    writeFileSync(path.join(dir, 'hook.js'), HOOK);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function threadsAtStart(env: NodeJS.ProcessEnv): number {
    const run = spawnSync(process.execPath, ['-r', path.join(dir, 'hook.js'), MAIN, '--version'], { env, encoding: 'utf8' });
    const m = /threads (\d+)/.exec(run.stderr);
    if (run.status !== 0 || !m) throw new Error(`Cannot count threads: buildd --version exited ${run.status}: ${run.stderr}`);
    return Number(m[1]);
  }

  test("before its first use, unless the operator's UV_THREADPOOL_SIZE says otherwise", () => {
    const env = { ...process.env };
    delete env['UV_THREADPOOL_SIZE'];
    const ours = threadsAtStart(env);
    const operators = threadsAtStart({ ...env, UV_THREADPOOL_SIZE: '1' });
    // everything but the pool is the same in both processes
    expect(ours - operators).toBe(defaultThreadpoolSize(availableParallelism()) - 1);
  });
});
