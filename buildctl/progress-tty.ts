import type { ProgressEvent } from '../buildd/builder';
import type { ProgressRenderer, RenderTarget } from './progress-renderer';
import { ProgressState, seconds, type VertexView } from './progress-state';

/** ANSI: move the cursor up n lines; clear the whole line. */
export const cursorUp = (n: number): string => `\x1b[${n}A`;
export const CLEAR_LINE = '\x1b[2K';

/** Redraws at most this often; the final frame is drawn by `end`. */
const FRAME_MS = 100;
/** Log lines shown under a running step. */
const TAIL_LINES = 6;

/**
 * BuildKit's tty view: a frame redrawn in place (cursor up over the previous frame, each line
 * cleared and rewritten) with a `[+] Building` header, one line per step with its duration,
 * and the last output lines of running steps.
 */
export class TtyRenderer implements ProgressRenderer {
  readonly state = new ProgressState();
  private readonly startedAt: number;
  private drawnLines = 0;
  private timer: NodeJS.Timeout | undefined;
  private done = false;

  constructor(private readonly out: RenderTarget) {
    this.startedAt = out.now();
  }

  event(ev: ProgressEvent): void {
    this.state.apply(ev, this.out.now());
    if (this.timer === undefined && !this.done) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.render();
      }, FRAME_MS);
      this.timer.unref();
    }
  }

  end(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.state.flushPartials(this.out.now());
    this.done = true;
    this.render();
  }

  /** Draws the current frame over the previous one. */
  render(): void {
    const lines = this.frame();
    let text = this.drawnLines > 0 ? cursorUp(this.drawnLines) : '';
    for (const l of lines) text += CLEAR_LINE + l + '\n';
    // a shorter frame than the last: clear the leftover lines, then come back up
    const extra = this.drawnLines - lines.length;
    if (extra > 0) text += `${CLEAR_LINE}\n`.repeat(extra) + cursorUp(extra);
    this.drawnLines = lines.length;
    this.out.write(text);
  }

  private frame(): string[] {
    const now = this.out.now();
    const width = Math.max(40, this.out.columns ?? 80);
    const all = [...this.state.vertices.values()].filter((v) => v.started !== undefined || v.cached || v.completed !== undefined);
    const finished = all.filter((v) => v.completed !== undefined).length;
    const lines = [`[+] Building ${seconds(now - this.startedAt)} (${finished}/${all.length})${this.done ? ' FINISHED' : ''}`];
    for (const v of all) {
      lines.push(fit(` => ${label(v)}`, seconds(duration(v, now)), width));
      if (v.completed === undefined || v.error) {
        for (const l of v.lines.slice(-TAIL_LINES)) lines.push(truncate(` => => # ${l.text}`, width));
      }
    }
    for (const w of this.state.warnings) lines.push(truncate(`WARNING: ${w.message}`, width));
    return lines;
  }
}

function label(v: VertexView): string {
  if (v.error) return `ERROR ${v.name}`;
  if (v.cached) return `CACHED ${v.name}`;
  return v.name;
}

function duration(v: VertexView, now: number): number {
  if (v.cached) return 0;
  const start = v.started ?? now;
  return (v.completed ?? now) - start;
}

/** `left … right` padded or cut to the terminal width. */
function fit(left: string, right: string, width: number): string {
  const room = width - right.length - 1;
  const l = left.length > room ? left.slice(0, Math.max(0, room - 1)) + '…' : left.padEnd(room);
  return `${l} ${right}`;
}

function truncate(s: string, width: number): string {
  // control characters from a step's output would move the cursor and break the redraw
  const clean = s.replace(/[\x00-\x1f\x7f]/g, ' ');
  return clean.length > width ? clean.slice(0, width - 1) + '…' : clean;
}
