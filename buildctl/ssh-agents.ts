import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import { BuildError } from '../solver/build-error';
import type { SshSpec } from './session-flags';

/**
 * The client's forwarded ssh agents (--ssh): each daemon channel becomes one connection to
 * the agent's socket.
 *
 * Lifecycle: one per build; `check()` before the build starts (every path is a socket);
 * `connect()` per channel the daemon opens.
 */
export class SshAgents {
  private readonly byId: Map<string, SshSpec>;

  constructor(specs: readonly SshSpec[]) {
    this.byId = new Map(specs.map((s) => [s.id, s]));
  }

  ids(): string[] {
    return [...this.byId.keys()].sort();
  }

  async check(): Promise<void> {
    for (const s of this.byId.values()) {
      if (s.paths.length !== 1) throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: one agent socket is expected, got ${s.paths.length} paths (key files are not supported)`);
      const p = s.paths[0] as string;
      let isSocket: boolean;
      try {
        isSocket = (await fsp.stat(p)).isSocket();
      } catch (err) {
        throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: cannot reach ${p} (${(err as Error).message})`);
      }
      if (!isSocket) throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: ${p} is not an agent socket (key files are not supported)`);
    }
  }

  /** A connection to agent `id`; undefined when the client forwards no such agent. */
  connect(id: string): net.Socket | undefined {
    const s = this.byId.get(id);
    if (!s) return undefined;
    return net.createConnection({ path: s.paths[0] as string, allowHalfOpen: true });
  }
}
