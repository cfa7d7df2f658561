import { createHash } from 'node:crypto';

/**
 * The directory name of a kept local: the client's key (BuildStart.local_keys) hashed with who
 * the client is (its TLS certificate's issuer and subject; empty on a unix socket or plain
 * tcp). A client that learns another's key still cannot sync against that client's copy and
 * so take files it never had; and a key chosen by the client never names a path on its own.
 */
export function storeKey(peer: string, clientKey: string): string {
  return createHash('sha256').update(`buildd-kept-local\0${peer}\0${clientKey}`).digest('hex');
}
