/**
 * Cluster-wide metrics read from Redis at scrape time: queue depths, jobs in flight, and the decision
 * and outcome counters every gate and observer keep in Redis. One Redis snapshot per scrape.
 */
import { Counter, Gauge } from 'prom-client';
import type { ApiContext } from './context';
import { countJobs } from './routes/queues';
import { allocation, fairnessIndex, type TenantAllocation } from '../governance/allocation';

interface DownstreamFairness {
  downstream: string;
  capacity: number;
  jain: number | null;
  starving: number;
  tenants: Record<string, TenantAllocation & { lastMinuteShare: number }>;
}

interface Snapshot {
  up: boolean;
  breakers: Array<{ downstream: string; state: string; held: number }>;
  breakerTransitions: Array<{ downstream: string; from: string; to: string; n: number }>;
  fairness: DownstreamFairness[];
  depths: Array<{ queue: string; role: string; state: string; n: number }>;
  inflight: Array<{ downstream: string; n: number }>;
  waiting: Array<{ downstream: string; tenant: string; n: number }>;
  stats: Array<{ downstream: string; counters: Record<string, number> }>;
}

export function registerClusterMetrics(ctx: ApiContext): void {
  const { registry } = ctx.metrics;
  let pending: Promise<Snapshot> | undefined;
  let takenAt = 0;

  const load = async (): Promise<Snapshot> => {
    try {
      const { topology, governance } = ctx;
      const depths: Snapshot['depths'] = [];
      for (const { role, queue } of topology.all()) {
        for (const [state, n] of Object.entries(await countJobs(queue))) depths.push({ queue: queue.name, role, state, n });
      }
      const inflight: Snapshot['inflight'] = [];
      const waiting: Snapshot['waiting'] = [];
      const stats: Snapshot['stats'] = [];
      for (const downstream of topology.downstreams.keys()) {
        inflight.push({ downstream, n: await governance.reads.inFlightCount(downstream) });
        for (const [tenant, n] of Object.entries(await governance.waiting.byTenant(downstream))) waiting.push({ downstream, tenant, n });
        stats.push({ downstream, counters: await governance.reads.stats(downstream) });
      }
      stats.push({ downstream: '', counters: await governance.reads.stats(undefined) });
      const fairness: DownstreamFairness[] = [];
      for (const d of ctx.config.downstreams) {
        const policy = (await governance.mirror.readPolicy(d.name)) ?? d.policy;
        const [alloc, fair, queued, capacity] = await Promise.all([
          allocation(governance, d.name, policy),
          fairnessIndex(governance, d.name, policy),
          governance.waiting.queuedTenants(d.name),
          governance.mirror.effectiveCapacity(d.name),
        ]);
        const bound = Date.now() - ctx.config.observer.starvationMs;
        fairness.push({
          downstream: d.name,
          capacity: capacity ?? policy.capacity,
          jain: fair.jain,
          starving: queued.filter((q) => q.since < bound).length,
          tenants: Object.fromEntries(Object.entries(alloc).map(([t, a]) => [t, { ...a, lastMinuteShare: fair.shares[t] ?? 0 }])),
        });
      }
      const breakers: Snapshot['breakers'] = [];
      for (const d of ctx.config.downstreams) {
        const state = await governance.breakers.gate(d.name);
        breakers.push({ downstream: d.name, state, held: state === 'closed' ? 0 : await governance.waiting.total(d.name) });
      }
      const breakerTransitions = await governance.breakers.transitionCounts();
      return { up: true, depths, inflight, waiting, stats, fairness, breakers, breakerTransitions };
    } catch {
      return { up: false, depths: [], inflight: [], waiting: [], stats: [], fairness: [], breakers: [], breakerTransitions: [] };
    }
  };
  const snapshot = () => {
    if (!pending || Date.now() - takenAt > 500) {
      takenAt = Date.now();
      pending = load();
    }
    return pending;
  };

  new Gauge({
    name: 'tollgate_redis_up',
    help: '1 when the API could read governance state from Redis at this scrape',
    registers: [registry],
    async collect() {
      this.set((await snapshot()).up ? 1 : 0);
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
  new Gauge({
    name: 'tollgate_waiting_jobs',
    help: 'Jobs in the waiting place, per downstream and tenant',
    labelNames: ['downstream', 'tenant'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of (await snapshot()).waiting) this.set({ downstream: w.downstream, tenant: w.tenant }, w.n);
    },
  });
  new Gauge({
    name: 'tollgate_inflight_jobs',
    help: 'Admitted jobs not yet finished, per downstream',
    labelNames: ['downstream'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of (await snapshot()).inflight) this.set({ downstream: d.downstream }, d.n);
    },
  });
  const perDownstream = (name: string, help: string, value: (f: DownstreamFairness) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['downstream'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const f of (await snapshot()).fairness) {
          const v = value(f);
          if (v !== null) this.set({ downstream: f.downstream }, v);
        }
      },
    });
  perDownstream('tollgate_effective_capacity', 'Capacity in force per downstream (cost units; adaptive capacity may lower it)', (f) => f.capacity);
  perDownstream('tollgate_fairness_jain', "Jain's fairness index of weight-normalised admissions over the current and previous minute", (f) => f.jain);
  perDownstream('tollgate_starving_tenants', 'Tenants with waiting work and no admission for longer than observer.starvationMs', (f) => f.starving);
  const perTenant = (name: string, help: string, value: (a: TenantAllocation & { lastMinuteShare: number }) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['downstream', 'tenant'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const f of (await snapshot()).fairness) {
          for (const [tenant, a] of Object.entries(f.tenants)) {
            const v = value(a);
            if (v !== null) this.set({ downstream: f.downstream, tenant }, v);
          }
        }
      },
    });
  perTenant('tollgate_tenant_share', "Tenant's share of the admissions over the current and previous minute", (a) => a.lastMinuteShare);
  perTenant('tollgate_tenant_entitlement_units', 'Capacity units the policy entitles the tenant to now', (a) => a.entitlement);
  perTenant('tollgate_tenant_inflight_units', 'Capacity units the tenant holds now', (a) => a.inFlight);
  new Gauge({
    name: 'tollgate_tenant_wait_seconds',
    help: 'Wait in the waiting place of the tenant\'s last 200 admitted jobs, by quantile',
    labelNames: ['downstream', 'tenant', 'quantile'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of (await snapshot()).fairness) {
        for (const [tenant, a] of Object.entries(f.tenants)) {
          if (a.waitP50Ms !== null) this.set({ downstream: f.downstream, tenant, quantile: '0.5' }, a.waitP50Ms / 1000);
          if (a.waitP99Ms !== null) this.set({ downstream: f.downstream, tenant, quantile: '0.99' }, a.waitP99Ms / 1000);
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
      for (const b of (await snapshot()).breakers) for (const s of ['closed', 'open', 'half-open']) this.set({ downstream: b.downstream, state: s }, b.state === s ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tollgate_breaker_held_jobs',
    help: 'Jobs held on a downstream while its breaker is not closed',
    labelNames: ['downstream'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const b of (await snapshot()).breakers) this.set({ downstream: b.downstream }, b.held);
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
  new Counter({
    name: 'tollgate_decisions_total',
    help: 'Gate decisions across all gates, by downstream ("" when refused before routing), outcome and reason',
    labelNames: ['downstream', 'outcome', 'reason'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const { downstream, counters } of (await snapshot()).stats) {
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
      for (const { downstream, counters } of (await snapshot()).stats) {
        for (const outcome of ['completed', 'failed', 'vanished']) {
          if (counters[outcome]) this.inc({ downstream, outcome }, counters[outcome]);
        }
      }
    },
  });
}
