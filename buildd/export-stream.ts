import { Writable } from 'node:stream';
import type { CallWriter } from './call-writer';

/** Largest export chunk on the wire: well below gRPC's 4 MiB message limit. */
export const EXPORT_CHUNK_BYTES = 1024 * 1024;

/**
 * The Writable a builder gets from `session.exportStream()`: each write becomes ExportChunk
 * messages of at most 1 MiB, and its callback fires only once they are handed to the call, so
 * a tar producer runs at the client's pace. `end()` sends the `eof` chunk.
 */
export function createExportStream(writer: CallWriter): Writable {
  return new Writable({
    highWaterMark: EXPORT_CHUNK_BYTES,
    write(chunk: Buffer, _enc, cb): void {
      void (async () => {
        for (let off = 0; off < chunk.length; off += EXPORT_CHUNK_BYTES) {
          const data = chunk.subarray(off, off + EXPORT_CHUNK_BYTES);
          await writer.send({ msg: 'export', export: { data, eof: false } });
        }
      })().then(() => cb(), cb);
    },
    final(cb): void {
      writer.send({ msg: 'export', export: { data: Buffer.alloc(0), eof: true } }).then(() => cb(), cb);
    },
  });
}
