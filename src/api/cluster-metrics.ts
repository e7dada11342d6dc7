/**
 * Cluster-wide metrics read from Redis at scrape time: queue depths, jobs in flight and waiting, the
 * decision and outcome counters every gate and observer keep in Redis, fairness and breakers. One
 * snapshot per scrape (src/api/cluster-snapshot.ts), bounded per tenant by `metrics.tenantSeries`.
 * They live in a registry of their own (Metrics.clusterRegistry): /metrics carries them when
 * `metrics.clusterSeries` is on, /metrics/cluster always, so one replica (or one scrape through the
 * load balancer) exports them rather than every API process.
 */
import { Counter, Gauge } from 'prom-client';
import type { ApiContext } from './context';
import { loadClusterSnapshot, OTHER_TENANTS, type ClusterSnapshot, type DownstreamSnapshot, type TenantRow } from './cluster-snapshot';

/** A snapshot is reused by every gauge of one scrape, and for this long after it was read. */
const REUSE_MS = 500;
const PING_TIMEOUT_MS = 1000;

export function registerClusterMetrics(ctx: ApiContext): void {
  const registry = ctx.metrics.clusterRegistry;
  let pending: Promise<ClusterSnapshot> | undefined;
  let readAt: number | undefined;
  const snapshot = () => {
    // While a read is in flight every gauge waits for it; a slow read never starts a second one.
    if (!pending || (readAt !== undefined && Date.now() - readAt > REUSE_MS)) {
      readAt = undefined;
      pending = loadClusterSnapshot(ctx).finally(() => (readAt = Date.now()));
    }
    return pending;
  };
  const downstreams = async () => (await snapshot()).downstreams;

  // This process's view, on its own /metrics whatever metrics.clusterSeries says (a gate's METRICS_PORT too).
  new Gauge({
    name: 'tollgate_redis_up',
    help: '1 when this process could reach Redis at this scrape',
    registers: [ctx.metrics.registry],
    async collect() {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS).unref());
      this.set(await Promise.race([ctx.redis.ping(), timeout]).then(() => 1, () => 0));
    },
  });
  new Gauge({
    name: 'tollgate_queue_jobs',
    help: 'Jobs in each tollgate queue by BullMQ state',
    labelNames: ['queue', 'role', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of (await snapshot()).depths) this.set({ queue: d.queue, role: d.role, state: d.state }, d.n);
    },
  });
  const perDownstream = (name: string, help: string, value: (d: DownstreamSnapshot) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['downstream'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const d of await downstreams()) {
          const v = value(d);
          if (v !== null) this.set({ downstream: d.downstream }, v);
        }
      },
    });
  perDownstream('tollgate_inflight_jobs', 'Admitted jobs not yet finished, per downstream', (d) => d.inflight);
  perDownstream('tollgate_effective_capacity', 'Capacity in force per downstream (cost units; adaptive capacity may lower it)', (d) => d.capacity);
  perDownstream('tollgate_fairness_jain', "Jain's fairness index of weight-normalised admissions over the current and previous minute", (d) => d.jain);
  perDownstream('tollgate_starving_tenants', 'Tenants with waiting work and no admission for longer than observer.starvationMs', (d) => d.starving);
  perDownstream('tollgate_active_tenants', 'Tenants with work (waiting or in flight) per downstream, all of them, whether or not they have series of their own', (d) => d.activeTenants);
  perDownstream('tollgate_breaker_held_jobs', 'Jobs held on a downstream while its breaker is not closed', (d) => d.breaker.held);
  const perTenant = (name: string, help: string, value: (a: TenantRow['allocation'], tenant: string) => number | null) =>
    new Gauge({
      name,
      help: `${help}; the metrics.tenantSeries tenants with the most waiting, the rest summed as tenant="(other)"`,
      labelNames: ['downstream', 'tenant'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const d of await downstreams()) {
          for (const { tenant, allocation } of d.tenants) {
            const v = value(allocation, tenant);
            if (v !== null) this.set({ downstream: d.downstream, tenant }, v);
          }
        }
      },
    });
  // A waiting series only where jobs wait; the sum always (it is the remainder of the total).
  perTenant('tollgate_waiting_jobs', 'Jobs in the waiting place, per downstream and tenant', (a, t) => (a.waiting > 0 || t === OTHER_TENANTS ? a.waiting : null));
  perTenant('tollgate_tenant_share', "Tenant's share of the admissions over the current and previous minute", (a) => a.lastMinuteShare);
  perTenant('tollgate_tenant_entitlement_units', 'Capacity units the policy entitles the tenant to now', (a) => a.entitlement);
  perTenant('tollgate_tenant_inflight_units', 'Capacity units the tenant holds now', (a) => a.inFlight);
  new Gauge({
    name: 'tollgate_tenant_wait_seconds',
    help: "Wait in the waiting place of the tenant's last 200 admitted jobs, by quantile; the metrics.tenantSeries tenants with the most waiting",
    labelNames: ['downstream', 'tenant', 'quantile'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of await downstreams()) {
        for (const { tenant, allocation: a } of d.tenants) {
          if (a.waitP50Ms !== null) this.set({ downstream: d.downstream, tenant, quantile: '0.5' }, a.waitP50Ms / 1000);
          if (a.waitP99Ms !== null) this.set({ downstream: d.downstream, tenant, quantile: '0.99' }, a.waitP99Ms / 1000);
        }
      }
    },
  });
  new Gauge({
    name: 'tollgate_breaker_state',
    help: 'Circuit breaker state per downstream: 1 for the state it is in, 0 for the others',
    labelNames: ['downstream', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of await downstreams()) for (const s of ['closed', 'open', 'half-open']) this.set({ downstream: d.downstream, state: s }, d.breaker.state === s ? 1 : 0);
    },
  });
  new Counter({
    name: 'tollgate_breaker_transitions_total',
    help: 'Breaker transitions across all processes, by downstream, from and to state',
    labelNames: ['downstream', 'from', 'to'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const t of (await snapshot()).breakerTransitions) this.inc({ downstream: t.downstream, from: t.from, to: t.to }, t.n);
    },
  });
  const statsOf = async () => {
    const s = await snapshot();
    return [...s.downstreams.map((d) => ({ downstream: d.downstream, counters: d.stats })), ...(s.up ? [{ downstream: '', counters: s.unroutedStats }] : [])];
  };
  new Counter({
    name: 'tollgate_decisions_total',
    help: 'Gate decisions across all gates, by downstream ("" when refused before routing), outcome and reason',
    labelNames: ['downstream', 'outcome', 'reason'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const { downstream, counters } of await statsOf()) {
        for (const [field, n] of Object.entries(counters)) {
          if (field === 'admitted' || field === 'queued') this.inc({ downstream, outcome: field, reason: '' }, n);
          else if (field.startsWith('dead:')) this.inc({ downstream, outcome: 'dead-lettered', reason: field.slice(5) }, n);
        }
      }
    },
  });
  new Counter({
    name: 'tollgate_outcomes_total',
    help: 'Admitted jobs that ended, across all observers, by downstream and outcome',
    labelNames: ['downstream', 'outcome'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const { downstream, counters } of await statsOf()) {
        for (const outcome of ['completed', 'failed', 'vanished']) {
          if (counters[outcome]) this.inc({ downstream, outcome }, counters[outcome]);
        }
      }
    },
  });
}
