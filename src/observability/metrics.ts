/**
 * Prometheus metrics (prom-client). One registry per process; components register what they own.
 * Cluster-wide figures (decision counters, queue depths) are read from Redis at scrape time by the
 * API (src/api/cluster-metrics.ts), so they are right whichever process made the decision; they have
 * a registry of their own, so that one process exports them (`metrics.clusterSeries`), not every one.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Fine buckets around the 5 ms decision-latency target, so a p99 near it is read to the millisecond. */
const DECISION_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class Metrics {
  /** This process's own series. */
  readonly registry = new Registry();
  /** Cluster-wide series, the same from every process (filled by the API: src/api/cluster-metrics.ts). */
  readonly clusterRegistry = new Registry();

  /** Gate decision latency: ingress job active in the gate → execution job added. */
  readonly promotionSeconds = new Histogram({
    name: 'tollgate_gate_promotion_seconds',
    help: 'Time from an ingress job becoming active in the gate to its execution job being added',
    labelNames: ['downstream'] as const,
    buckets: DECISION_BUCKETS,
    registers: [this.registry],
  });

  /** The decision alone (classify and the intake script, batched), a part of the promotion time. */
  readonly decisionSeconds = new Histogram({
    name: 'tollgate_gate_decision_seconds',
    help: 'Time from an ingress job becoming active in the gate to its admission decision (before the execution job is added)',
    labelNames: ['downstream'] as const,
    buckets: DECISION_BUCKETS,
    registers: [this.registry],
  });

  /** End-to-end wait: ingress job created → execution job added. */
  readonly ingressToExecSeconds = new Histogram({
    name: 'tollgate_ingress_to_exec_seconds',
    help: 'Time from an ingress job being added by its producer to its execution job being added',
    labelNames: ['downstream'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly gateErrors = new Counter({
    name: 'tollgate_gate_errors_total',
    help: 'Infrastructure errors met by the gate (the job is retried, not lost)',
    labelNames: ['stage'] as const,
    registers: [this.registry],
  });

  readonly observerEvents = new Counter({
    name: 'tollgate_observer_events_total',
    help: 'Events read from execution queue event streams by this observer',
    labelNames: ['downstream', 'event'] as const,
    registers: [this.registry],
  });

  readonly alertEvents = new Counter({
    name: 'tollgate_alert_events_total',
    help: 'Alert events this process recorded in Postgres, by alert kind and event (alert.opened, alert.changed, alert.resolved)',
    labelNames: ['kind', 'event'] as const,
    registers: [this.registry],
  });

  readonly notifications = new Counter({
    name: 'tollgate_notifications_total',
    help: 'Notification attempts by this process, by target kind (webhook, queue) and outcome (delivered, retried, dead)',
    labelNames: ['target', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly notificationLatency = new Histogram({
    name: 'tollgate_notification_delivery_seconds',
    help: 'Time from a notification being queued in the outbox to its delivery',
    labelNames: ['target'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  });

  readonly observerReleases = new Counter({
    name: 'tollgate_observer_releases_total',
    help: 'Admitted jobs released by this observer, by outcome and by what found them (event or sweep)',
    labelNames: ['downstream', 'outcome', 'source'] as const,
    registers: [this.registry],
  });

  readonly observerGaps = new Counter({
    name: 'tollgate_observer_event_gaps_total',
    help: 'Times an event stream was trimmed past events this observer had not read (the sweep then reconciles)',
    labelNames: ['downstream'] as const,
    registers: [this.registry],
  });

  readonly capacityAdjustments = new Counter({
    name: 'tollgate_capacity_adjustments_total',
    help: 'Changes of adaptive capacity, by downstream and reason (increase, latency, failures)',
    labelNames: ['downstream', 'reason'] as const,
    registers: [this.registry],
  });

  readonly breakerTransitions = new Counter({
    name: 'tollgate_breaker_transitions_by_process_total',
    help: 'Breaker transitions made by this process (cluster-wide: tollgate_breaker_transitions_total)',
    labelNames: ['downstream', 'from', 'to'] as const,
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'tollgate_process_' });
  }
}
