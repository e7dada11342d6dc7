/**
 * OpenTelemetry spans for the gate's part of a job, when `telemetry.enabled` (off by default). A job's
 * trace context travels as BullMQ's telemetry metadata (`opts.telemetry.metadata`: the propagation
 * carrier as JSON, as `bullmq-otel` writes it): the gate's span continues the producer's trace, and the
 * execution job carries the gate's span on, so a worker with BullMQ telemetry continues from it.
 *
 *   producer: add ingress ─▶ tollgate.gate <downstream> (decision) ─▶ [tollgate.admit <downstream>] ─▶ worker: process
 *
 * `tollgate.gate` covers the decision (and the execution add, when admitted at once); a job that waited
 * gets `tollgate.admit` when the scheduler adds it, a child of the producer's span. Spans go to the
 * global tracer provider: the process registers OpenTelemetry's SDK (tollgate does not bundle one).
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context } from '@opentelemetry/api';
import type { JobsOptions } from 'bullmq';

export interface TracingConfig {
  enabled: boolean;
  tracerName: string;
}

function parentOf(metadata: string | undefined): Context {
  if (!metadata) return ROOT_CONTEXT;
  try {
    const carrier = JSON.parse(metadata) as Record<string, string>;
    return typeof carrier === 'object' && carrier !== null ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
  } catch {
    // Not a carrier (a producer's own string): the span starts a trace of its own.
    return ROOT_CONTEXT;
  }
}

export class Tracing {
  constructor(private readonly cfg: TracingConfig) {}

  get enabled(): boolean {
    return this.cfg.enabled;
  }

  /**
   * Runs `fn` in a span named `name`, a child of the trace in `producerOpts` (if any). `fn` gets the
   * metadata for the execution job (the span's context), or undefined when tracing is off or the
   * producer asked for no context (`omitContext`); `annotate` adds attributes found on the way.
   */
  async span<T>(
    name: string,
    producerOpts: JobsOptions,
    attributes: Attributes,
    fn: (metadata: string | undefined, annotate: (a: Attributes) => void) => Promise<T>,
  ): Promise<T> {
    if (!this.cfg.enabled || producerOpts.telemetry?.omitContext) return fn(undefined, () => undefined);
    const tracer = trace.getTracer(this.cfg.tracerName);
    const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parentOf(producerOpts.telemetry?.metadata));
    const ctx = trace.setSpan(context.active(), span);
    const carrier: Record<string, string> = {};
    propagation.inject(ctx, carrier);
    try {
      return await context.with(ctx, () => fn(JSON.stringify(carrier), (a) => span.setAttributes(a)));
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  }
}

/** The execution job's options with the trace context to carry on (unchanged when there is none). */
export function withTraceContext(opts: JobsOptions, metadata: string | undefined): JobsOptions {
  return metadata === undefined ? opts : { ...opts, telemetry: { ...opts.telemetry, metadata } };
}
