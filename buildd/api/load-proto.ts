import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { passPreEncoded } from './pre-encoded';
import { protoPath } from './proto-path';

/**
 * Options shared by the daemon and the CLI so both see the same object shapes: snake_case
 * names as in the .proto, int64 as number (times in ms and file sizes stay below 2^53), enums
 * as their names, bytes as Buffer, and `msg` naming the field set in a oneof.
 */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The Control service as grpc-js sees it: the definition for a server, the constructor for a client. */
export interface ControlApi {
  service: grpc.ServiceDefinition;
  Client: grpc.ServiceClientConstructor;
}

let cached: ControlApi | undefined;

/** Loads buildd.proto once per process. */
export function loadControlApi(): ControlApi {
  if (cached) return cached;
  const def = protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { buildd: { v1: { Control: grpc.ServiceClientConstructor } } };
  const service = pkg.buildd.v1.Control.service;
  // a client writes PreEncoded messages as they are (buildctl's listings, see encodeListing)
  cached = { service, Client: grpc.makeGenericClientConstructor(passPreEncoded(service), 'Control') };
  return cached;
}
