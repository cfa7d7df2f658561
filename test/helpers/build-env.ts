import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { pushBusyboxImage } from './busybox-image';
import { RunResult, runBuildctl, startDaemon, TestDaemon } from './daemon';
import { startRegistry, TestRegistry } from './registry';
import { mountsUnder } from './store-mounts';

const run = promisify(execFile);

/**
 * Everything an end-to-end build test needs, all real: Debian's docker-registry on a free
 * loopback port with a busybox base pushed by skopeo, and bin/buildd with fresh mutual-TLS
 * certificates and its own state root. Lifecycle: `startBuildEnv` in beforeAll, `stop` in
 * afterAll; `restart` stops the daemon and starts a new one on the same root.
 */
export interface BuildEnv {
  registry: TestRegistry;
  /** `127.0.0.1:PORT/busybox:latest` */
  busybox: string;
  daemon: TestDaemon;
  root: string;
  /** a scratch directory removed by stop() */
  tmp: string;
  /** buildctl with --addr and --tlsdir of the current daemon */
  buildctl(args: string[]): Promise<RunResult>;
  /** `build` of a context dir holding a Dockerfile, with extra flags */
  build(context: string, extra?: string[]): Promise<RunResult>;
  restart(): Promise<void>;
  /** containers runc still knows under the daemon's runc root */
  runcContainers(): Promise<string[]>;
  mounts(): Promise<string[]>;
  stop(): Promise<void>;
}

/** `daemonEnv`: extra environment of the daemon (kept across restart), e.g. NODE_DEBUG */
export async function startBuildEnv(daemonEnv?: Record<string, string>): Promise<BuildEnv> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-e2e-'));
  const root = path.join(tmp, 'root');
  const registry = await startRegistry();
  const { ref: busybox } = await pushBusyboxImage(registry.host);
  let daemon = await startDaemon({ builder: 'real', root, env: daemonEnv });
  const env: BuildEnv = {
    registry,
    busybox,
    get daemon() {
      return daemon;
    },
    root,
    tmp,
    buildctl: (args) => runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), ...args]),
    build: (context, extra = []) =>
      env.buildctl(['build', '--frontend', 'dockerfile.v0', '--local', `context=${context}`, '--local', `dockerfile=${context}`, '--progress', 'plain', ...extra]),
    restart: async () => {
      await daemon.stop();
      daemon = await startDaemon({ builder: 'real', root, env: daemonEnv });
    },
    runcContainers: async () => {
      // The daemon makes its runc root at start; its absence would make this check vacuous.
      await fsp.access(path.join(root, 'runc'));
      const { stdout } = await run('runc', ['--root', path.join(root, 'runc'), 'list', '-q']);
      return stdout.split('\n').filter((l) => l.trim().length > 0);
    },
    mounts: () => mountsUnder(root),
    stop: async () => {
      await daemon.stop();
      await registry.stop();
      const left = await mountsUnder(root);
      for (const m of left) await run('umount', ['-l', m]);
      await fsp.rm(tmp, { recursive: true, force: true });
      if (left.length > 0) throw new Error(`Cannot stop cleanly: buildd left mounts ${left.join(', ')}`);
    },
  };
  return env;
}

/** Writes a context directory: file name → content (a string) or { symlink: target }. */
export async function writeContext(dir: string, files: Record<string, string | { symlink: string } | { mode: number; content: string }>): Promise<string> {
  for (const [name, spec] of Object.entries(files)) {
    const p = path.join(dir, name);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    if (typeof spec === 'string') await fsp.writeFile(p, spec);
    else if ('symlink' in spec) await fsp.symlink(spec.symlink, p);
    else {
      await fsp.writeFile(p, spec.content);
      await fsp.chmod(p, spec.mode);
    }
  }
  return dir;
}
