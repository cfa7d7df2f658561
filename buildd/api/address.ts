import { BuildError } from '../../solver/build-error';

/** Where buildd listens and buildctl connects when no --addr (or BUILDKIT_HOST) says otherwise. */
export const DEFAULT_ADDR = 'unix:///run/buildd/buildd.sock';

/** A daemon address as written on the command line: `tcp://host:port` or `unix:///abs/path`. */
export type Address = { kind: 'tcp'; host: string; port: number; text: string } | { kind: 'unix'; path: string; text: string };

export function parseAddress(text: string): Address {
  if (text.startsWith('unix://')) {
    const p = text.slice('unix://'.length);
    if (!p.startsWith('/') || p.includes('\0')) throw new BuildError('invalid-argument', `Cannot parse address ${text}: expected unix:///absolute/path`);
    return { kind: 'unix', path: p, text };
  }
  if (text.startsWith('tcp://')) {
    const rest = text.slice('tcp://'.length).replace(/\/$/, '');
    // [v6]:port or host:port
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(rest);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port > 65535) throw new BuildError('invalid-argument', `Cannot parse address ${text}: expected tcp://host:port`);
    return { kind: 'tcp', host: m[1] as string, port, text };
  }
  throw new BuildError('invalid-argument', `Cannot parse address ${text}: expected tcp://host:port or unix:///path`);
}

/** The target string grpc-js expects for this address. */
export function grpcTarget(addr: Address): string {
  return addr.kind === 'unix' ? `unix://${addr.path}` : `${addr.host}:${addr.port}`;
}
