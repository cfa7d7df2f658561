import * as grpc from '@grpc/grpc-js';
import { BuildError, type BuildErrorCode } from '../../solver/build-error';
import { ERROR_METADATA } from './server-messages';

/** The one place where a BuildError becomes a gRPC status (and back, for the client). */

const CODE_TO_STATUS: Record<BuildErrorCode, grpc.status> = {
  'invalid-argument': grpc.status.INVALID_ARGUMENT,
  'not-found': grpc.status.NOT_FOUND,
  'failed-precondition': grpc.status.FAILED_PRECONDITION,
  'permission-denied': grpc.status.PERMISSION_DENIED,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  unavailable: grpc.status.UNAVAILABLE,
  cancelled: grpc.status.CANCELLED,
  internal: grpc.status.INTERNAL,
};

/** A status object that grpc-js sends when emitted as a call's 'error'. */
export interface GrpcErrorStatus {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

export function buildErrorToStatus(err: BuildError): GrpcErrorStatus {
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_METADATA.code, err.code);
  if (err.vertex !== undefined) metadata.set(ERROR_METADATA.vertex, err.vertex);
  if (err.exitCode !== undefined) metadata.set(ERROR_METADATA.exitCode, String(err.exitCode));
  if (err.range !== undefined) metadata.set(ERROR_METADATA.range, `${err.range.file}:${err.range.startLine}-${err.range.endLine}`);
  // Status details travel percent-encoded in an HTTP/2 trailer (grpc-js encodes them), so line
  // breaks survive: a frontend error quotes the Dockerfile lines below its message. Keep a sane length.
  const details = err.message.replace(/\r/g, '').slice(0, 8192);
  return { code: CODE_TO_STATUS[err.code], details, metadata };
}

const STATUS_TO_CODE = new Map<number, BuildErrorCode>(
  Object.entries(CODE_TO_STATUS).map(([code, status]) => [status, code as BuildErrorCode]),
);

/**
 * What the client makes of a failed call: the daemon's BuildError when the trailers carry
 * one, or a transport error (handshake, connection refused) as `unavailable`.
 */
export function statusToBuildError(err: { code?: number; details?: string; message?: string; metadata?: grpc.Metadata }): BuildError {
  const md = err.metadata;
  const first = (key: string): string | undefined => {
    const v = md?.get(key)[0];
    return typeof v === 'string' ? v : undefined;
  };
  const fromDaemon = first(ERROR_METADATA.code);
  const code: BuildErrorCode = isBuildErrorCode(fromDaemon) ? fromDaemon : STATUS_TO_CODE.get(err.code ?? -1) ?? 'unavailable';
  const exit = first(ERROR_METADATA.exitCode);
  const exitCode = exit !== undefined && /^-?\d+$/.test(exit) ? Number(exit) : undefined;
  const rangeText = first(ERROR_METADATA.range);
  const m = rangeText ? /^(.*):(\d+)-(\d+)$/.exec(rangeText) : null;
  const range = m ? { file: m[1] as string, startLine: Number(m[2]), endLine: Number(m[3]) } : undefined;
  let message = (err.details || err.message || 'unknown error').replace(/\s*Resolution note:\s*$/, '');
  // no daemon metadata and UNAVAILABLE: the call never reached the service (refused, handshake)
  if (fromDaemon === undefined && code === 'unavailable') message = `Cannot reach the daemon: ${message}`;
  return new BuildError(code, message, { vertex: first(ERROR_METADATA.vertex), exitCode, range });
}

function isBuildErrorCode(v: string | undefined): v is BuildErrorCode {
  return v !== undefined && Object.prototype.hasOwnProperty.call(CODE_TO_STATUS, v);
}
