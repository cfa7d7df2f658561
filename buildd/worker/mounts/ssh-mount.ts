import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import type { SshMount } from '../../../solver/op';
import type { SessionAttachables } from '../../../solver/worker';
import type { OciMount } from '../oci-spec';

/** The ssh agent sockets of one step. */
export interface PreparedSshAgents {
  mounts: OciMount[];
  /** Stops listening and ends every relayed connection; call once the container is gone. */
  close(): Promise<void>;
}

/**
 * For each ssh mount of a step, listens on a unix socket in `dir` (the step's tmpfs directory)
 * that is bound at the mount's target, with its mode and owner; every connection a process
 * makes is relayed to the client's agent over the session (ClientSession.connectSshAgent),
 * both ways with backpressure (pipe). An agent the client does not forward fails the step when
 * required and is left out otherwise, as BuildKit does.
 */
export async function prepareSshAgents(specs: readonly SshMount[], session: SessionAttachables | undefined, dir: string): Promise<PreparedSshAgents> {
  const servers: net.Server[] = [];
  const conns = new Set<net.Socket>();
  const close = async (): Promise<void> => {
    for (const c of conns) c.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  };
  const mounts: OciMount[] = [];
  try {
    for (const [i, spec] of specs.entries()) {
      if (!session?.hasSshAgent(spec.id)) {
        if (spec.required) throw new BuildError('not-found', `Cannot mount ssh agent ${spec.id}: not found (forward it with buildctl build --ssh ${spec.id})`);
        continue;
      }
      const socket = path.join(dir, `ssh-${i}.sock`);
      const server = net.createServer({ allowHalfOpen: true }, (conn) => relay(conn, session, spec.id, conns));
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socket, () => (server.off('error', reject), resolve()));
      });
      await fsp.chown(socket, spec.uid, spec.gid);
      await fsp.chmod(socket, spec.mode);
      mounts.push({ destination: spec.target, type: 'bind', source: socket, options: ['rbind', 'nosuid', 'nodev', 'noexec'] });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { mounts, close };
}

function relay(conn: net.Socket, session: SessionAttachables, id: string, conns: Set<net.Socket>): void {
  conns.add(conn);
  let channel;
  try {
    channel = session.connectSshAgent(id);
  } catch {
    conn.destroy();
    conns.delete(conn);
    return;
  }
  const ch = channel;
  const done = (): void => {
    conns.delete(conn);
    conn.destroy();
    ch.destroy();
  };
  // an end travels on both ways (half-close kept: a process may shut down its writing side and
  // still wait for the answer); the connection is gone once both sides are closed
  conn.pipe(ch);
  ch.pipe(conn);
  conn.once('error', done);
  ch.once('error', done);
  conn.once('close', done);
}
