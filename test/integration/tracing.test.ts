/**
 * Traces through the gate (telemetry.enabled): a producer and a worker with BullMQ telemetry
 * (bullmq-otel) and tollgate in between give one trace, the gate's span between the producer's and
 * the worker's, also for a job that waited (its admission is a span of its own). OpenTelemetry's SDK
 * with an in-memory exporter, real Redis and Postgres, tollgate in-process.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { Queue, Worker } from 'bullmq';
import { BullMQOtel } from 'bullmq-otel';
import { parseApiTokens } from '../../src/config/tokens';
import { createHarness, type Harness } from '../support/harness';
import { clusterQueueName, testRedis, waitFor } from '../support/services';

jest.setTimeout(60_000);

const ADMIN = 'admin-secret-0123456789';
const exporter = new InMemorySpanExporter();
let h: Harness;
let producer: Queue;
let worker: Worker;
const connections: Array<ReturnType<typeof testRedis>> = [];

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  h = await createHarness('tracing', { env: { apiTokens: parseApiTokens(`ops:${ADMIN}:admin`) }, config: { telemetry: { enabled: true } } });
  await h.start();
  const c = () => {
    const r = testRedis(h.env.redisUrl);
    connections.push(r);
    return r;
  };
  producer = new Queue(h.config.queues.ingress, { connection: c(), prefix: h.prefix, telemetry: new BullMQOtel({ tracerName: 'producer' }) });
  worker = new Worker(clusterQueueName('exec.scanner'), async (job) => ({ mark: job.data.mark }), { connection: c(), prefix: h.prefix, telemetry: new BullMQOtel({ tracerName: 'worker' }) });
});
afterAll(async () => {
  await worker.close();
  await producer.close();
  await h.close();
  for (const c of connections) c.disconnect();
  trace.disable();
  context.disable();
  propagation.disable();
});

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);


it("puts the gate's span between the producer's add and the worker's processing, in one trace", async () => {
  const job = await producer.add('scan.image', { tenantId: 'acme', mark: 'traced' });
  const gate = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === 'tollgate.gate' && s.attributes['messaging.message.id'] === job.id) || undefined, 'the gate span');
  const spans = () => spansOf(gate.spanContext().traceId);
  const processed = await waitFor(() => spans().find((s) => s.name.startsWith('process ')) || undefined, "the worker's span in the same trace");
  const added = spans().find((s) => s.name.startsWith('add ') && s.attributes['bullmq.job.id'] === job.id);
  expect(added).toBeDefined();
  expect(parentOf(gate)).toBe(added!.spanContext().spanId);
  expect(parentOf(processed)).toBe(gate.spanContext().spanId);
  expect(gate.attributes).toMatchObject({ 'tollgate.downstream': 'scanner', 'tollgate.tenant': 'acme', 'tollgate.decision': 'admitted' });
});

it('gives a job that waited a span for its admission, in the same trace, before the worker', async () => {
  const pause = await h.api('POST', '/api/v1/throttles', { body: { tenantId: 'slow', action: 'pause' }, token: ADMIN });
  const job = await producer.add('scan.image', { tenantId: 'slow', mark: 'waited' });
  const gate = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === 'tollgate.gate' && s.attributes['messaging.message.id'] === job.id) || undefined, 'the gate span');
  expect(gate.attributes['tollgate.decision']).not.toBe('admitted');
  await h.api('DELETE', `/api/v1/throttles/${pause.body.id}`, { token: ADMIN });
  const spans = () => spansOf(gate.spanContext().traceId);
  const processed = await waitFor(() => spans().find((s) => s.name.startsWith('process ')) || undefined, "the worker's span in the same trace");
  const admit = spans().find((s) => s.name === 'tollgate.admit')!;
  const added = spans().find((s) => s.name.startsWith('add ') && s.attributes['bullmq.job.id'] === job.id)!;
  expect(admit).toBeDefined();
  expect(parentOf(admit)).toBe(added.spanContext().spanId);
  expect(parentOf(processed)).toBe(admit.spanContext().spanId);
});
