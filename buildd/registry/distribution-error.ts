import type { ServerResponse } from 'node:http';

/** The error codes of the OCI Distribution spec that the embedded registry answers with. */
export type DistributionCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNSUPPORTED'
  | 'PAGINATION_NUMBER_INVALID'
  | 'RANGE_INVALID'
  | 'UNAUTHORIZED'
  | 'TOOMANYREQUESTS';

/**
 * A refusal the client is told about: an HTTP status and the spec's error body
 * (`{"errors":[{"code","message","detail"}]}`). Anything else a handler throws is a 500
 * without detail (logged by the server).
 */
export class DistributionError extends Error {
  constructor(
    readonly status: number,
    readonly code: DistributionCode,
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
  }
}

/** Writes `err` as the response (headers not sent yet); a HEAD gets the status and no body. */
export function sendDistributionError(res: ServerResponse, err: DistributionError, head: boolean): void {
  const body = Buffer.from(JSON.stringify({ errors: [{ code: err.code, message: err.message, ...(err.detail === undefined ? {} : { detail: err.detail }) }] }));
  res.writeHead(err.status, { 'content-type': 'application/json', 'content-length': String(body.length) });
  res.end(head ? undefined : body);
}
