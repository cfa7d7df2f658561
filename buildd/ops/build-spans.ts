import { context, propagation, ROOT_CONTEXT, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { Metadata } from '@grpc/grpc-js';
import type { ProgressEvent } from '../builder';

/** The instrumentation scope of the daemon's build and step spans. */
const TRACER_NAME = 'buildd';

/** The W3C trace context a client sent as gRPC metadata (buildctl passes $TRACEPARENT on); values over 512 bytes are ignored. */
export function traceCarrierOf(metadata: Metadata | undefined): Record<string, string> {
  const carrier: Record<string, string> = {};
  for (const key of ['traceparent', 'tracestate']) {
    const v = metadata?.get(key)[0];
    if (typeof v === 'string' && v.length <= 512) carrier[key] = v;
  }
  return carrier;
}

/** The client's trace context (W3C `traceparent`/`tracestate`, as gRPC metadata), for a build's span to continue. */
export function remoteContext(carrier: Record<string, string>): Context {
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/**
 * One build's spans: `buildd.build` (a child of the client's trace context when it sent one),
 * and under it a span per vertex (step, context transfer, export) made from the build's
 * progress, timed by the vertex's own start and completion. `run` executes the build inside the
 * build span's context, so pull and push spans of the registry client nest under it.
 *
 * Lifecycle: from `BuildSpans.start` to one `end`; vertices still open then end with it.
 */
export class BuildSpans {
  private readonly vertices = new Map<string, Span>();
  private readonly ctx: Context;
  private ended = false;

  private constructor(private readonly span: Span) {
    this.ctx = trace.setSpan(context.active(), span);
  }

  static start(parent: Context, ref: string): BuildSpans {
    const span = trace.getTracer(TRACER_NAME).startSpan('buildd.build', { attributes: { 'buildd.build.ref': ref } }, parent);
    return new BuildSpans(span);
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    return context.with(this.ctx, fn);
  }

  /** What the start message says (frontend, outputs). */
  describe(attrs: Record<string, string | number | boolean>): void {
    this.span.setAttributes(attrs);
  }

  progress(ev: ProgressEvent): void {
    if (ev.type !== 'vertex' || this.ended) return;
    let span = this.vertices.get(ev.digest);
    if (span === undefined) {
      if (ev.started === undefined && !ev.cached) return;
      span = trace.getTracer(TRACER_NAME).startSpan(ev.name, { startTime: ev.started ?? ev.completed, attributes: { 'buildd.vertex.digest': ev.digest } }, this.ctx);
      this.vertices.set(ev.digest, span);
    }
    if (ev.completed === undefined) return;
    span.setAttribute('buildd.vertex.cached', ev.cached);
    if (ev.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: ev.error });
    span.end(ev.completed);
    this.vertices.delete(ev.digest);
  }

  end(outcome: 'succeeded' | 'failed' | 'cancelled', error?: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const span of this.vertices.values()) span.end();
    this.vertices.clear();
    this.span.setAttribute('buildd.build.status', outcome);
    if (outcome !== 'succeeded') this.span.setStatus({ code: SpanStatusCode.ERROR, ...(error === undefined ? {} : { message: error }) });
    this.span.end();
  }
}
