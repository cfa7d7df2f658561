import type { ProgressEvent } from '../buildd/builder';

/** Log lines kept per vertex: enough for the failure summary and the tty view. */
export /** The longest unfinished line kept per step; beyond it only its tail is shown. */
const MAX_PARTIAL_LINE = 8 * 1024;
const KEPT_LOG_LINES = 10;

/** What the client knows of one vertex. */
export interface VertexView {
  /** BuildKit's `#N`, in order of first appearance */
  index: number;
  digest: string;
  name: string;
  started?: number;
  completed?: number;
  cached: boolean;
  error?: string;
  /** why the step runs although its last build was cached (buildd's cache-miss explanation) */
  cacheMiss?: string;
  /** last complete log lines, with the time (ms) each arrived */
  lines: Array<{ at: number; text: string }>;
  /** bytes of a line not yet ended by '\n' */
  partial: string;
}

/**
 * Progress events folded into per-vertex state, shared by the renderers and the failure
 * summary. Lifecycle: one per build; fed every event in order.
 */
export class ProgressState {
  readonly vertices = new Map<string, VertexView>();
  readonly warnings: Array<Extract<ProgressEvent, { type: 'warning' }>> = [];

  /** Applies `ev`; returns the vertex it concerns and the complete lines it added. */
  apply(ev: ProgressEvent, now: number): { vertex?: VertexView; newLines: string[] } {
    if (ev.type === 'warning') {
      this.warnings.push(ev);
      return { newLines: [] };
    }
    if (ev.type === 'vertex') {
      const v = this.vertex(ev.digest);
      v.name = ev.name || v.name;
      v.started = ev.started ?? v.started;
      v.completed = ev.completed ?? v.completed;
      v.cached = ev.cached || v.cached;
      v.error = ev.error ?? v.error;
      v.cacheMiss = ev.cacheMiss ?? v.cacheMiss;
      return { vertex: v, newLines: [] };
    }
    const v = this.vertex(ev.vertex);
    const text = v.partial + ev.data.toString('utf8');
    const parts = text.split('\n');
    // A step that prints no newline (a progress bar, binary output) must not grow memory.
    v.partial = (parts.pop() ?? '').slice(-MAX_PARTIAL_LINE);
    const newLines = parts.map((l) => l.replace(/\r$/, ''));
    for (const line of newLines) v.lines.push({ at: now, text: line });
    if (v.lines.length > KEPT_LOG_LINES) v.lines.splice(0, v.lines.length - KEPT_LOG_LINES);
    return { vertex: v, newLines };
  }

  /** Ends every vertex's unfinished line (at the end of the build). */
  flushPartials(now: number): Array<{ vertex: VertexView; line: string }> {
    const out: Array<{ vertex: VertexView; line: string }> = [];
    for (const v of this.vertices.values()) {
      if (v.partial === '') continue;
      v.lines.push({ at: now, text: v.partial });
      if (v.lines.length > KEPT_LOG_LINES) v.lines.shift();
      out.push({ vertex: v, line: v.partial });
      v.partial = '';
    }
    return out;
  }

  private vertex(digest: string): VertexView {
    let v = this.vertices.get(digest);
    if (!v) {
      v = { index: this.vertices.size + 1, digest, name: digest, cached: false, lines: [], partial: '' };
      this.vertices.set(digest, v);
    }
    return v;
  }
}

/** `0.4s` as BuildKit prints durations. */
export function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}
