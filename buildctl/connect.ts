import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { grpcTarget, parseAddress } from '../buildd/api/address';
import { loadControlApi } from '../buildd/api/load-proto';
import { BuildError } from '../solver/build-error';

/** Global flags of buildctl that say how to reach the daemon. */
export interface ConnectFlags {
  addr: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  tlsservername?: string;
  tlsdir?: string;
}


/**
 * A Control client. Lifecycle: made per command; `close()` it when done. TLS is used on tcp
 * when any TLS flag is given: `--tlsdir DIR` means DIR/ca.pem, DIR/cert.pem, DIR/key.pem, and
 * single flags override it. Without a client certificate the daemon refuses the handshake.
 */
export function connect(flags: ConnectFlags): grpc.Client {
  const addr = parseAddress(flags.addr);
  const { Client } = loadControlApi();
  const options: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 4 * 1024 * 1024 };
  const tlsGiven = [flags.tlsdir, flags.tlscacert, flags.tlscert, flags.tlskey].some((v) => v !== undefined);
  if (addr.kind === 'unix' || !tlsGiven) return new Client(grpcTarget(addr), grpc.credentials.createInsecure(), options);
  const file = (own: string | undefined, name: string): Buffer | null => {
    const p = own ?? (flags.tlsdir !== undefined ? path.join(flags.tlsdir, name) : undefined);
    if (p === undefined) return null;
    try {
      return fs.readFileSync(p);
    } catch (err) {
      throw new BuildError('invalid-argument', `Cannot read TLS file ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const ca = file(flags.tlscacert, 'ca.pem');
  const cert = file(flags.tlscert, 'cert.pem');
  const key = file(flags.tlskey, 'key.pem');
  if ((cert === null) !== (key === null)) throw new BuildError('invalid-argument', 'Cannot configure TLS: --tlscert and --tlskey go together');
  if (flags.tlsservername) {
    // the name checked against the daemon certificate's SANs
    options['grpc.ssl_target_name_override'] = flags.tlsservername;
    options['grpc.default_authority'] = flags.tlsservername;
  }
  return new Client(grpcTarget(addr), grpc.credentials.createSsl(ca, key, cert), options);
}
