import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthStub extends grpc.Client {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: HealthStatus }) => void): void;
}

/**
 * A grpc.health.v1.Health client, as a probe (kubelet's, grpc_health_probe) would be: plain,
 * or with a client certificate from a buildctl --tlsdir. Lifecycle: `close()` when done.
 */
export interface HealthClient {
  check(service?: string): Promise<HealthStatus>;
  close(): void;
}

export function healthClient(target: string, tlsDir?: string): HealthClient {
  const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: new (t: string, c: grpc.ChannelCredentials) => HealthStub } } } };
  const creds = tlsDir
    ? grpc.credentials.createSsl(
        readFileSync(path.join(tlsDir, 'ca.pem')),
        readFileSync(path.join(tlsDir, 'key.pem')),
        readFileSync(path.join(tlsDir, 'cert.pem')),
      )
    : grpc.credentials.createInsecure();
  const client = new pkg.grpc.health.v1.Health(target.replace(/^tcp:\/\//, ''), creds);
  return {
    check: (service = '') =>
      new Promise((resolve, reject) => {
        client.check({ service }, (err, res) => (err ? reject(err) : resolve(res?.status ?? 'UNKNOWN')));
      }),
    close: () => client.close(),
  };
}
