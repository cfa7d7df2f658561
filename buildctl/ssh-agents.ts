import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../solver/build-error';
import type { SshSpec } from './session-flags';

/**
 * The client's forwarded ssh agents (--ssh): each daemon channel becomes one connection to
 * the agent's socket. `--ssh ID=SOCKET` forwards a running agent; `--ssh ID=KEY[,KEY]` (key
 * files, as BuildKit accepts) loads the keys into a private ssh-agent that buildctl starts
 * for this build (OpenSSH's ssh-agent and ssh-add; a key with a passphrase is refused, there
 * is no prompt), so the keys themselves never leave the client.
 *
 * Lifecycle: one per build; `start()` before the build starts (checks every path, starts the
 * private agents); `connect()` per channel the daemon opens; `close()` at the end (stops the
 * private agents and removes their sockets).
 */
export class SshAgents {
  private readonly byId: Map<string, SshSpec>;
  private readonly sockets = new Map<string, string>();
  private readonly agents: Array<{ child: ChildProcess; dir: string }> = [];

  constructor(specs: readonly SshSpec[]) {
    this.byId = new Map(specs.map((s) => [s.id, s]));
  }

  ids(): string[] {
    return [...this.byId.keys()].sort();
  }

  async start(): Promise<void> {
    try {
      for (const s of this.byId.values()) this.sockets.set(s.id, await this.socketFor(s));
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** A connection to agent `id`; undefined when the client forwards no such agent. */
  connect(id: string): net.Socket | undefined {
    const sock = this.sockets.get(id);
    if (sock === undefined) return undefined;
    return net.createConnection({ path: sock, allowHalfOpen: true });
  }

  async close(): Promise<void> {
    for (const { child, dir } of this.agents.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  private async socketFor(s: SshSpec): Promise<string> {
    const kinds: Array<'socket' | 'file'> = [];
    for (const p of s.paths) {
      let st;
      try {
        st = await fsp.stat(p);
      } catch (err) {
        throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: cannot reach ${p} (${(err as Error).message})`);
      }
      if (st.isSocket()) kinds.push('socket');
      else if (st.isFile()) kinds.push('file');
      else throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: ${p} is neither an agent socket nor a key file`);
    }
    if (kinds.includes('socket')) {
      if (s.paths.length !== 1) throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: an agent socket cannot be combined with other paths`);
      return s.paths[0] as string;
    }
    return this.startAgent(s);
  }

  /** Starts `ssh-agent -D` on a socket in a private temp dir and loads the key files into it. */
  private async startAgent(s: SshSpec): Promise<string> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildctl-ssh-'));
    const sock = path.join(dir, 'agent.sock');
    const child = spawn('ssh-agent', ['-D', '-a', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.agents.push({ child, dir });
    // with -D, ssh-agent prints its SSH_AUTH_SOCK line once it listens
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const fail = (why: string): void => reject(new BuildError('failed-precondition', `Cannot use --ssh ${s.id}: cannot start ssh-agent for its key files (${why})`));
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code) => fail(`it exited with ${code}: ${out.trim()}`));
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('SSH_AUTH_SOCK')) resolve();
      });
    });
    for (const key of s.paths) {
      const res = await runSshAdd(key, sock);
      if (res.code !== 0) {
        throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: ssh-add cannot load ${key} (${res.output.trim() || `exit code ${res.code}`})`);
      }
    }
    return sock;
  }
}

function runSshAdd(key: string, sock: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    // no terminal and no askpass: a key with a passphrase fails instead of prompting
    const child = spawn('ssh-add', ['-q', key], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'], SSH_AUTH_SOCK: sock, SSH_ASKPASS_REQUIRE: 'never' },
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', (err) => resolve({ code: null, output: err.message }));
    child.once('close', (code) => resolve({ code, output }));
  });
}
