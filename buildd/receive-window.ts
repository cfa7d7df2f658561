import type { Http2SecureServer, Http2Server, ServerHttp2Session } from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

/**
 * HTTP/2 receive window of each stream a client opens to the daemon, and of its connection.
 * HTTP/2 starts at 64 KiB: a client streaming its context then waits a round trip between the
 * two event loops for every 64 KiB, and the daemon sat idle half of a 20,000-file transfer
 * (see the commit). gRPC-Java's servers use 1 MiB; Go's grow theirs as they measure the link.
 */
export const STREAM_RECEIVE_WINDOW = 4 * 1024 * 1024;
export const CONNECTION_RECEIVE_WINDOW = 4 * STREAM_RECEIVE_WINDOW;

type AnyHttp2Server = Http2Server | Http2SecureServer;

/**
 * Raises the receive windows of every HTTP/2 listener `server` has bound so far (call it after
 * bindAsync): new connections get the stream window in their SETTINGS and a connection window to
 * match. grpc-js reads its `grpc-node.flow_control_window` option on the client side only
 * (grpc/grpc-node#3058 would add the server side), so the listeners are reached through the
 * server's own map of them; Node's updateSettings and setLocalWindowSize are public. When a
 * grpc-js release no longer has that map, nothing changes and false says so.
 */
export function widenReceiveWindows(server: grpc.Server, stream = STREAM_RECEIVE_WINDOW, connection = CONNECTION_RECEIVE_WINDOW): boolean {
  const listeners: unknown = Reflect.get(server, 'http2Servers');
  if (!(listeners instanceof Map)) return false;
  let widened = false;
  for (const listener of listeners.keys() as IterableIterator<unknown>) {
    if (!isHttp2Server(listener)) continue;
    listener.updateSettings({ initialWindowSize: stream });
    listener.on('session', (session: ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(connection);
      } catch {
        // a session closed before its settings: nothing to widen
      }
    });
    widened = true;
  }
  return widened;
}

function isHttp2Server(x: unknown): x is AnyHttp2Server {
  return typeof x === 'object' && x !== null && typeof (x as { updateSettings?: unknown }).updateSettings === 'function' && typeof (x as { on?: unknown }).on === 'function';
}
