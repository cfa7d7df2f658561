import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { makeCerts } from './certs';
import { watchDaemon } from './daemon-process';
import { makeTestNetwork } from './test-network';

const REPO = path.resolve(__dirname, '..', '..');
const DIST = path.join(REPO, 'dist');

let built = false;

/**
 * Compiles the project once per test process (`tsc -p tsconfig.build.json`) so tests run the
 * same JavaScript as `bin/buildd`. Type errors elsewhere in the tree do not stop tsc from
 * emitting; a missing entry point does fail.
 */
export function ensureBuilt(): void {
  // scripts/test.sh compiles once before jest and says so; a single test run by hand compiles here.
  if (built || process.env['BUILDD_TEST_BUILT'] === '1') return;
  try {
    execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
      cwd: REPO,
      stdio: 'pipe',
    });
  } catch {
    // tsc exits non-zero on type errors but still emits
  }
  for (const f of ['buildd/main.js', 'buildd/run-daemon.js', 'buildctl/main.js']) {
    if (!fs.existsSync(path.join(DIST, f))) throw new Error(`Cannot run the daemon tests: dist/${f} was not built`);
  }
  built = true;
}

/**
 * A buildd process for a test. Lifecycle: `startDaemon` resolves once the daemon logged that it
 * listens; `stop()` sends SIGTERM, waits for the exit and removes the temp dirs it made.
 */
export interface TestDaemon {
  addr: string;
  certsDir?: string;
  root: string;
  process: ChildProcess;
  stderr(): string;
  /** SIGTERM, then the exit code */
  stop(): Promise<number | null>;
}

export interface StartDaemonOptions {
  root?: string;
  /** mutual TLS with fresh certificates (default), or plain tcp with --insecure-tcp */
  tls?: boolean;
  extraArgs?: string[];
  /**
   * 'stub': the daemon's process code (runDaemon) with a builder whose builds fail, so the
   * API, TLS and lifecycle are tested whatever state the build machinery is in; 'real': bin/buildd.
   */
  builder?: 'stub' | 'real';
  /** extra environment for the daemon (e.g. DOCKER_CONFIG) */
  env?: NodeJS.ProcessEnv;
  /**
   * a command the daemon runs under, given node and its arguments after it (e.g. unshare and a
   * shell that mounts something first, then `exec "$@"`)
   */
  wrap?: string[];
}

const STUB_ENTRY = `
const { runDaemon } = require(${JSON.stringify(path.join(DIST, 'buildd', 'run-daemon.js'))});
const { BuildError } = require(${JSON.stringify(path.join(DIST, 'solver', 'build-error.js'))});
runDaemon(process.argv.slice(1), async () => ({
  build: async () => { throw new BuildError('internal', 'Cannot build: the test daemon has no builder'); },
  close: async () => undefined,
}));
`;

export async function startDaemon(opts: StartDaemonOptions = {}): Promise<TestDaemon> {
  ensureBuilt();
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-test-'));
  const root = opts.root ?? path.join(tmp, 'root');
  const args = ['--addr', 'tcp://127.0.0.1:0', '--root', root];
  let certsDir: string | undefined;
  if (opts.tls ?? true) {
    const certs = await makeCerts(path.join(tmp, 'certs'));
    certsDir = certs.dir;
    args.push('--tlscacert', certs.daemon.ca, '--tlscert', certs.daemon.cert, '--tlskey', certs.daemon.key);
  } else {
    args.push('--insecure-tcp');
  }
  args.push(...(opts.extraArgs ?? []));
  // RUN steps of a real daemon get a network of this test's own unless the test names one.
  const network = opts.builder === 'real' && !(await namesCniConfig(opts.extraArgs ?? [])) ? await makeTestNetwork(path.join(tmp, 'net')) : undefined;
  if (network) args.push('--cni-config-path', network.conflist);
  const nodeArgs = opts.builder === 'real' ? [path.join(DIST, 'buildd', 'main.js'), ...args] : ['-e', STUB_ENTRY, '--', ...args];
  const [cmd, ...cmdArgs] = opts.wrap ? [...opts.wrap, process.execPath, ...nodeArgs] : [process.execPath, ...nodeArgs];
  const child = spawn(cmd as string, cmdArgs, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } });
  const watched = await watchDaemon(child, 'buildd', 'SIGKILL', async () => {
    await network?.remove();
    await fsp.rm(tmp, { recursive: true, force: true });
  });
  return {
    addr: watched.addr,
    certsDir,
    root,
    process: child,
    stderr: watched.stderr,
    stop: async () => {
      const code = await watched.stop();
      await network?.remove();
      await fsp.rm(tmp, { recursive: true, force: true });
      return code;
    },
  };
}

/** Whether the daemon's arguments choose a CNI config, by flag or in a `--config` file. */
async function namesCniConfig(extraArgs: string[]): Promise<boolean> {
  if (extraArgs.includes('--cni-config-path')) return true;
  const i = extraArgs.indexOf('--config');
  if (i < 0 || extraArgs[i + 1] === undefined) return false;
  const text = await fsp.readFile(extraArgs[i + 1], 'utf8');
  // the daemon's rule (configFormat): JSON by name or a leading `{`, else buildd.toml
  if (!extraArgs[i + 1].endsWith('.toml') && (extraArgs[i + 1].endsWith('.json') || text.trimStart().startsWith('{'))) {
    return (JSON.parse(text) as { cniConfigPath?: unknown }).cniConfigPath !== undefined;
  }
  const worker = parseToml(text)['worker'] as { oci?: { cniConfigPath?: unknown } } | undefined;
  return worker?.oci?.cniConfigPath !== undefined;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  /** stdout as bytes, for binary output such as `--output type=oci,dest=-` */
  stdoutBytes: Buffer;
  stderr: string;
}

/** Runs a node script of dist/ (bin) to completion. */
export function runNode(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  ensureBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(DIST, script), ...args], {
      env: { PATH: process.env['PATH'], ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString(), stdoutBytes, stderr });
    });
  });
}

export function runBuildctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return runNode('buildctl/main.js', args, env);
}

export function runBuildd(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return runNode('buildd/main.js', args, env);
}
