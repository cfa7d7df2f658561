import type { ProgressEvent } from '../builder';
import type { ServerMessage } from './server-messages';

/** ProgressEvent ⇄ BuildServerMessage: the daemon encodes, the client decodes. */

export function encodeProgress(ev: ProgressEvent): ServerMessage {
  switch (ev.type) {
    case 'vertex':
      return {
        msg: 'vertex',
        vertex: {
          digest: ev.digest,
          name: ev.name,
          started_ms: ev.started ?? 0,
          completed_ms: ev.completed ?? 0,
          cached: ev.cached,
          error: ev.error ?? '',
          cache_miss: ev.cacheMiss ?? '',
        },
      };
    case 'log':
      return { msg: 'log', log: { vertex: ev.vertex, stream: ev.stream, data: ev.data, timestamp_ms: ev.at ?? 0 } };
    case 'warning': {
      const r = ev.range;
      const range = r ? { file: r.file, start_line: r.startLine, end_line: r.endLine, column: r.column ?? 0 } : null;
      return { msg: 'warning', warning: { message: ev.message, range } };
    }
  }
}

/** undefined for messages that are not progress (export, result). */
export function decodeProgress(m: ServerMessage): ProgressEvent | undefined {
  switch (m.msg) {
    case 'vertex': {
      const v = m.vertex;
      return {
        type: 'vertex',
        digest: v.digest,
        name: v.name,
        started: v.started_ms || undefined,
        completed: v.completed_ms || undefined,
        cached: v.cached,
        error: v.error || undefined,
        ...(v.cache_miss ? { cacheMiss: v.cache_miss } : {}),
      };
    }
    case 'log':
      return { type: 'log', vertex: m.log.vertex, stream: m.log.stream === 2 ? 2 : 1, data: m.log.data, ...(m.log.timestamp_ms ? { at: m.log.timestamp_ms } : {}) };
    case 'warning': {
      const r = m.warning.range;
      const range = r && r.file ? { file: r.file, startLine: r.start_line, endLine: r.end_line, column: r.column || undefined } : undefined;
      return { type: 'warning', message: m.warning.message, range };
    }
    default:
      return undefined;
  }
}
