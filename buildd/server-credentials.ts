import { promises as fsp } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { BuildError } from '../solver/build-error';
import type { DaemonConfig } from './config';

/**
 * Credentials for tcp listeners: mutual TLS when the config names a CA, certificate and key
 * (a client must present a certificate signed by that CA, checked in the handshake, before any
 * RPC), otherwise insecure, which the caller only uses with `insecureTcp`.
 */
export async function serverCredentials(tls: DaemonConfig['tls']): Promise<grpc.ServerCredentials | undefined> {
  if (!tls.ca || !tls.cert || !tls.key) return undefined;
  const [ca, cert, key] = await Promise.all([readPem(tls.ca), readPem(tls.cert), readPem(tls.key)]);
  try {
    return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot configure TLS: ${(err as Error).message}`);
  }
}

async function readPem(file: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot read TLS file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
