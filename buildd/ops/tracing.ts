import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import { builddVersion } from '../version';

/**
 * OpenTelemetry traces of the daemon, exported over OTLP/HTTP (JSON) when an endpoint is set:
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT (the exporter reads them,
 * as every OTel SDK does), else the config's `otel.endpoint`. The provider, the W3C trace
 * context propagator and an AsyncLocalStorage context manager are registered globally, so code
 * anywhere (the registry client's pull and push spans) makes spans under the build that runs it
 * through @opentelemetry/api alone; without an endpoint that API is a no-op.
 *
 * Lifecycle: `startTracing` once at start; `shutdown()` at stop flushes what is buffered.
 */
export interface Tracing {
  endpoint: string;
  shutdown(): Promise<void>;
}

export function startTracing(otel: { endpoint?: string; serviceName?: string } | undefined, logger: Logger): Tracing | undefined {
  const fromEnv = process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] || process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] || undefined;
  const endpoint = fromEnv ?? otel?.endpoint;
  if (endpoint === undefined || endpoint === '') return undefined;
  const exporter = new OTLPTraceExporter(fromEnv !== undefined ? {} : { url: `${endpoint.replace(/\/+$/, '')}/v1/traces` });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': process.env['OTEL_SERVICE_NAME'] ?? otel?.serviceName ?? 'buildd',
      'service.version': builddVersion(),
    }),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  logger.info({ endpoint }, `exporting traces over OTLP to ${endpoint}`);
  return {
    endpoint,
    shutdown: async () => {
      await provider.shutdown().catch((err: Error) => logger.warn({ err: err.message }, 'cannot flush the last traces'));
    },
  };
}
