/**
 * A deterministic discrete-event simulation of one downstream under an allocation policy: scripted
 * arrivals per tenant, a service time per job, the policy's scheduler (src/core/policy.ts) deciding
 * who goes next whenever capacity frees or work arrives. Used by `npm run simulate`, by the what-if
 * endpoint (`POST /api/v1/policies/:downstream/simulate`), and by the scheduler's tests.
 */
import { FairQueue } from './fair-queue';
import { entitlementOf, weightOf, type Policy } from './policy';

export interface Arrival {
  /** ms from the start. */
  at: number;
  count: number;
  cost?: number;
  /** How long each job runs once admitted (ms). */
  serviceMs: number;
}

export interface SimTenant {
  id: string;
  arrivals: Arrival[];
  /** Cost units already in flight at the start, finishing after `serviceMs` of the first arrival. */
  inflight?: number;
}

export interface SimResult {
  durationMs: number;
  tenants: Record<
    string,
    {
      admitted: number;
      costAdmitted: number;
      /** Share of all cost units admitted. */
      share: number;
      /** Share of capacity the policy entitles it to, among tenants that had waiting work (src/core/policy.ts). */
      entitlement: number;
      waitP50Ms: number | null;
      waitP99Ms: number | null;
      stillWaiting: number;
    }
  >;
  /** Jain's fairness index of weight-normalised admitted cost units (1 = perfectly fair). */
  jain: number;
  /** Tenant order of the first admissions (for tests and explanations). */
  order: string[];
}

interface Job {
  arrivedAt: number;
  cost: number;
  serviceMs: number;
}

export function jainIndex(values: readonly number[]): number {
  const n = values.length;
  if (n === 0) return 1;
  const sum = values.reduce((a, b) => a + b, 0);
  const sq = values.reduce((a, b) => a + b * b, 0);
  return sq === 0 ? 1 : (sum * sum) / (n * sq);
}

function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

export function simulate(policy: Policy, tenants: readonly SimTenant[], durationMs: number, maxOrder = 200): SimResult {
  const queue = new FairQueue<Job>(policy);
  const waits = new Map<string, number[]>();
  const admitted = new Map<string, { n: number; cost: number }>();
  const hadWork = new Set<string>();
  const order: string[] = [];

  type Event = { at: number; seq: number; run: () => void };
  const events: Event[] = [];
  let seq = 0;
  const schedule = (at: number, run: () => void) => {
    events.push({ at, seq: seq++, run });
    events.sort((a, b) => a.at - b.at || a.seq - b.seq);
  };
  let now = 0;

  for (const t of tenants) {
    waits.set(t.id, []);
    admitted.set(t.id, { n: 0, cost: 0 });
    if (t.inflight) {
      queue.charge(t.id, t.inflight);
      const carried = t.inflight;
      schedule(t.arrivals[0]?.serviceMs ?? 1000, () => queue.release(t.id, carried, now));
    }
    for (const a of t.arrivals) {
      schedule(a.at, () => {
        for (let i = 0; i < a.count; i++) queue.add(t.id, { cost: a.cost ?? 1, item: { arrivedAt: a.at, cost: a.cost ?? 1, serviceMs: a.serviceMs } }, now);
        hadWork.add(t.id);
      });
    }
  }

  const drain = () => {
    for (const { tenant, job } of queue.drain(now)) {
      waits.get(tenant)!.push(now - job.item.arrivedAt);
      const a = admitted.get(tenant)!;
      a.n++;
      a.cost += job.cost;
      if (order.length < maxOrder) order.push(tenant);
      schedule(now + job.item.serviceMs, () => queue.release(tenant, job.cost, now));
    }
  };

  // The run covers [0, durationMs): an event at durationMs belongs to the next run.
  while (events.length > 0 && events[0]!.at < durationMs) {
    const e = events.shift()!;
    now = e.at;
    e.run();
    // Several events at one instant are applied before the scheduler runs, like one drain call.
    if (events.length === 0 || events[0]!.at > now) drain();
  }

  const totalCost = [...admitted.values()].reduce((s, a) => s + a.cost, 0);
  const active = [...hadWork];
  const out: SimResult['tenants'] = {};
  for (const t of tenants) {
    const w = [...waits.get(t.id)!].sort((a, b) => a - b);
    const a = admitted.get(t.id)!;
    out[t.id] = {
      admitted: a.n,
      costAdmitted: a.cost,
      share: totalCost === 0 ? 0 : a.cost / totalCost,
      entitlement: hadWork.has(t.id) ? (entitlementOf(policy, t.id, active) ?? policy.capacity) / policy.capacity : 0,
      waitP50Ms: percentile(w, 0.5),
      waitP99Ms: percentile(w, 0.99),
      stillWaiting: queue.waiting(t.id),
    };
  }
  return {
    durationMs,
    tenants: out,
    jain: jainIndex(active.map((t) => admitted.get(t)!.cost / weightOf(policy, t))),
    order,
  };
}
