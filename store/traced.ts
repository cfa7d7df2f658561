import { SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';

/**
 * Runs `work` inside a span of the registry client's instrumentation scope, a child of whatever
 * span is active (a build's, through the daemon's context manager). Without a tracer provider
 * registered this is @opentelemetry/api's no-op and costs next to nothing.
 */
export function traced<T>(name: string, attributes: Attributes, work: () => Promise<T>): Promise<T> {
  return trace.getTracer('buildd.registry').startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await work();
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
