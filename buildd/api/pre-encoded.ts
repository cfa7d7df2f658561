import type * as grpc from '@grpc/grpc-js';

/**
 * A request message already serialized (by buildctl's walk worker, see encodeListing): written
 * to a call as is. Lifecycle: made per message, dropped once written.
 */
export class PreEncoded {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * `service` with every request serializer passing PreEncoded bytes through unchanged; any
 * other message is serialized as before.
 */
export function passPreEncoded(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const pass = (serialize: grpc.serialize<unknown>) => (value: unknown): Buffer =>
    value instanceof PreEncoded ? Buffer.from(value.bytes.buffer, value.bytes.byteOffset, value.bytes.byteLength) : serialize(value);
  return Object.fromEntries(Object.entries(service).map(([name, method]) => [name, { ...method, requestSerialize: pass(method.requestSerialize) }]));
}
