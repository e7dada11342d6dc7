/**
 * Cluster-wide metrics read from Redis at scrape time: queue depths, jobs in flight, and the decision
 * and outcome counters every gate and observer keep in Redis. One Redis snapshot per scrape.
 */
import { Counter, Gauge } from 'prom-client';
import type { ApiContext } from './context';
import { countJobs } from './routes/queues';

interface Snapshot {
  up: boolean;
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
        inflight.push({ downstream, n: await governance.inFlightCount(downstream) });
        for (const [tenant, n] of Object.entries(await governance.waitingByTenant(downstream))) waiting.push({ downstream, tenant, n });
        stats.push({ downstream, counters: await governance.readStats(downstream) });
      }
      stats.push({ downstream: '', counters: await governance.readStats(undefined) });
      return { up: true, depths, inflight, waiting, stats };
    } catch {
      return { up: false, depths: [], inflight: [], waiting: [], stats: [] };
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
