/** What the keyed-locals receiver says to the client and to the build service. */

/** The daemon's side of a FileRequest. */
export interface FileRequestMessage {
  local: string;
  paths: string[];
  done: boolean;
}

/** What one keyed local cost: content actually received, files linked, copied, and whether the kept copy was used as it was. */
export interface LocalTransfer {
  local: string;
  filesReceived: number;
  bytesReceived: number;
  reused: boolean;
  linked: number;
  copied: number;
}
