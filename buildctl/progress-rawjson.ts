import type { ProgressEvent } from '../buildd/builder';
import type { ProgressRenderer, RenderTarget } from './progress-renderer';
import { ProgressState } from './progress-state';

/** One JSON object per line per event, for programs; log data is base64 (it may not be text). */
export class RawJsonRenderer implements ProgressRenderer {
  readonly state = new ProgressState();

  constructor(private readonly out: RenderTarget) {}

  event(ev: ProgressEvent): void {
    this.state.apply(ev, this.out.now());
    const json = ev.type === 'log' ? { ...ev, data: ev.data.toString('base64') } : ev;
    this.out.write(JSON.stringify(json) + '\n');
  }

  end(): void {
    this.state.flushPartials(this.out.now());
  }
}
