import type { ProgressEvent } from '../buildd/builder';
import type { ProgressRenderer, RenderTarget } from './progress-renderer';
import { ProgressState, seconds, type VertexView } from './progress-state';

/**
 * BuildKit's plain progress: a `#N name` header when a step starts, its output as
 * `#N 0.123 line` (seconds since the step started), and `#N DONE 0.4s`, `#N CACHED` or
 * `#N ERROR: msg` when it ends; buildd adds `#N cache miss: why` to a step that runs although
 * its last build was cached. A blank line separates blocks of different steps, and a step
 * that prints again after another one gets its header again.
 */
export class PlainRenderer implements ProgressRenderer {
  readonly state = new ProgressState();
  private last: VertexView | undefined;
  private readonly ended = new Set<string>();

  constructor(private readonly out: RenderTarget) {}

  event(ev: ProgressEvent): void {
    const now = this.out.now();
    const { vertex: v, newLines } = this.state.apply(ev, now);
    if (ev.type === 'warning') {
      const where = ev.range ? ` (${ev.range.file}:${ev.range.startLine})` : '';
      this.out.write(`WARNING: ${ev.message}${where}\n`);
      this.last = undefined;
      return;
    }
    if (!v) return;
    if (ev.type === 'log') {
      for (const line of newLines) this.logLine(v, line, now);
      return;
    }
    if (v.started === undefined && v.completed === undefined && !v.cached) return;
    if (ev.cacheMiss !== undefined) {
      this.line(v, `#${v.index} cache miss: ${ev.cacheMiss}`);
      return;
    }
    const status = this.status(v);
    if (status === undefined) return this.header(v);
    if (this.ended.has(v.digest)) return;
    this.ended.add(v.digest);
    this.line(v, status);
  }

  end(): void {
    const now = this.out.now();
    for (const { vertex, line } of this.state.flushPartials(now)) this.logLine(vertex, line, now);
  }

  private status(v: VertexView): string | undefined {
    if (v.error) return `#${v.index} ERROR: ${v.error}`;
    if (v.cached) return `#${v.index} CACHED`;
    if (v.completed !== undefined) return `#${v.index} DONE ${seconds(v.completed - (v.started ?? v.completed))}`;
    return undefined;
  }

  private logLine(v: VertexView, text: string, now: number): void {
    const t = ((now - (v.started ?? now)) / 1000).toFixed(3);
    this.line(v, `#${v.index} ${t} ${text}`);
  }

  private header(v: VertexView): void {
    if (this.last === v) return;
    if (this.last !== undefined) this.out.write('\n');
    this.out.write(`#${v.index} ${v.name}\n`);
    this.last = v;
  }

  private line(v: VertexView, text: string): void {
    this.header(v);
    this.out.write(text + '\n');
  }
}
