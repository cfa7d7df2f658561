import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pushBusyboxImage } from '../helpers/busybox-image';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(240_000);

/**
 * OpenTelemetry: a daemon with OTEL_EXPORTER_OTLP_ENDPOINT sends its spans over OTLP/HTTP to
 * a receiver this test runs on loopback; the build span continues the trace buildctl was given
 * in $TRACEPARENT, and step, pull and push spans hang under it.
 */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: Array<{ key: string; value: { stringValue?: string; boolValue?: boolean } }>;
}

let tmp: string;
let registry: TestRegistry;
let daemon: TestDaemon;
let receiver: http.Server;
const spans: OtlpSpan[] = [];
const resources: string[] = [];

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-tracing-'));
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.method === 'POST') {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
        };
        for (const rs of body.resourceSpans) {
          resources.push(rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '');
          for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  registry = await startRegistry();
  const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  daemon = await startDaemon({ builder: 'real', env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_SERVICE_NAME: 'buildd-under-test' } });
});

afterAll(async () => {
  await daemon?.stop();
  await registry?.stop();
  receiver?.closeAllConnections();
  receiver?.close();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

test("the build span continues buildctl's $TRACEPARENT; steps, pull and push spans are its children", async () => {
  const base = (await pushBusyboxImage(registry.host, 'library/busybox', '1')).ref;
  const ctx = await writeContext(path.join(tmp, 'ctx'), { Dockerfile: `FROM ${base}\nRUN echo traced > /t\n` });
  const traceId = randomBytes(16).toString('hex');
  const parentId = randomBytes(8).toString('hex');
  const res = await runBuildctl(
    ['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`, '--output', `type=image,name=${registry.host}/traced/app:1,push=true`],
    { TRACEPARENT: `00-${traceId}-${parentId}-01` },
  );
  expect(res.stderr).toMatch(/RUN echo traced/);
  expect(res.code).toBe(0);

  const build = await waitFor('the build span', async () => spans.find((s) => s.name === 'buildd.build' && s.traceId === traceId));
  expect(build.parentSpanId).toBe(parentId);
  expect(build.attributes).toEqual(expect.arrayContaining([{ key: 'buildd.build.status', value: { stringValue: 'succeeded' } }]));
  const children = (): OtlpSpan[] => spans.filter((s) => s.traceId === traceId && s.parentSpanId === build.spanId);
  await waitFor('step, pull and push spans', async () => {
    const names = children().map((s) => s.name);
    return ['registry.resolve', 'registry.pull', 'registry.push', 'exporting to image'].every((n) => names.includes(n)) && names.some((n) => /\[2\/2\] RUN echo traced/.test(n)) ? true : undefined;
  });
  const run = children().find((s) => /RUN echo traced/.test(s.name));
  expect(run?.attributes).toEqual(expect.arrayContaining([{ key: 'buildd.vertex.cached', value: { boolValue: false } }]));
  expect(resources).toContain('buildd-under-test');
});

test('a build without $TRACEPARENT starts a trace of its own', async () => {
  const before = new Set(spans.filter((s) => s.name === 'buildd.build').map((s) => s.spanId));
  const ctx = await writeContext(path.join(tmp, 'solo'), { Dockerfile: 'FROM scratch\nENV A=1\n' });
  const res = await runBuildctl(['--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'), 'build', '--frontend', 'dockerfile.v0', '--local', `context=${ctx}`, '--local', `dockerfile=${ctx}`]);
  expect(res.code).toBe(0);
  const span = await waitFor('a new build span', async () => spans.find((s) => s.name === 'buildd.build' && !before.has(s.spanId)));
  expect(span.parentSpanId ?? '').toBe('');
});
