/**
 * A deterministic discrete-event simulation of one downstream under an allocation policy: scripted
 * arrivals per tenant, a service time per job, the policy's scheduler (src/core/policy.ts) deciding
 * who goes next whenever capacity frees or work arrives. Used by `npm run simulate`, by the what-if
 * endpoint (`POST /api/v1/policies/:downstream/simulate`), and by the scheduler's tests.
 */
import { percentileOfSorted as percentile } from './stats';
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
  /** Work the simulation did (tenants the scheduler looked at, summed over its decisions). */
  steps: number;
  /** Set when the step budget ran out before the horizon: the simulated time reached (ms). */
  truncatedAtMs?: number;
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

/** A min-heap of events by time, then scheduling order (the order the simulation applies them in). */
class EventQueue {
  private readonly heap: Array<{ at: number; seq: number; run: () => void }> = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  peek(): { at: number } | undefined {
    return this.heap[0];
  }

  push(at: number, run: () => void): void {
    const h = this.heap;
    h.push({ at, seq: this.seq++, run });
    for (let i = h.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  pop(): { at: number; run: () => void } {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!;
    const y = this.heap[b]!;
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
}

export interface SimulationProgress {
  /** Simulated time reached (ms). */
  at: number;
  /** Work done so far: tenants looked at by the scheduler, summed over its decisions. */
  steps: number;
}

/**
 * The simulation as a generator: it yields its progress about every `sliceSteps` steps, so a caller
 * can spread it over the event loop, and stops early (the result's `truncatedAtMs`) once `maxSteps`
 * steps are spent. `simulate` runs it to the end in one go.
 */
export function* simulation(
  policy: Policy,
  tenants: readonly SimTenant[],
  durationMs: number,
  opts: { maxOrder?: number; maxSteps?: number; sliceSteps?: number } = {},
): Generator<SimulationProgress, SimResult> {
  const maxOrder = opts.maxOrder ?? 200;
  const maxSteps = opts.maxSteps ?? Infinity;
  const sliceSteps = opts.sliceSteps ?? Infinity;
  const queue = new FairQueue<Job>(policy);
  const waits = new Map<string, number[]>();
  const admitted = new Map<string, { n: number; cost: number }>();
  const hadWork = new Set<string>();
  const order: string[] = [];
  const events = new EventQueue();
  let now = 0;
  let steps = 0;
  let lastYield = 0;

  for (const t of tenants) {
    waits.set(t.id, []);
    admitted.set(t.id, { n: 0, cost: 0 });
    if (t.inflight) {
      queue.charge(t.id, t.inflight);
      const carried = t.inflight;
      events.push(t.arrivals[0]?.serviceMs ?? 1000, () => queue.release(t.id, carried, now));
    }
    for (const a of t.arrivals) {
      events.push(a.at, () => {
        for (let i = 0; i < a.count; i++) queue.add(t.id, { cost: a.cost ?? 1, item: { arrivedAt: a.at, cost: a.cost ?? 1, serviceMs: a.serviceMs } }, now);
        hadWork.add(t.id);
      });
    }
  }

  const drain = () => {
    const eligible = queue.eligibleTenants;
    const out = queue.drain(now);
    // Each decision of the reference scheduler looks at every eligible tenant.
    steps += (out.length + 1) * Math.max(1, eligible);
    for (const { tenant, job } of out) {
      waits.get(tenant)!.push(now - job.item.arrivedAt);
      const a = admitted.get(tenant)!;
      a.n++;
      a.cost += job.cost;
      if (order.length < maxOrder) order.push(tenant);
      events.push(now + job.item.serviceMs, () => queue.release(tenant, job.cost, now));
    }
  };

  // The run covers [0, durationMs): an event at durationMs belongs to the next run.
  let truncatedAtMs: number | undefined;
  while (events.size > 0 && events.peek()!.at < durationMs) {
    if (steps >= maxSteps) {
      truncatedAtMs = now;
      break;
    }
    const e = events.pop();
    now = e.at;
    e.run();
    // Several events at one instant are applied before the scheduler runs, like one drain call.
    if (events.size === 0 || events.peek()!.at > now) drain();
    if (steps - lastYield >= sliceSteps) {
      lastYield = steps;
      yield { at: now, steps };
    }
  }

  const totalCost = [...admitted.values()].reduce((s2, a) => s2 + a.cost, 0);
  const active = [...hadWork];
  const out: SimResult['tenants'] = {};
  let summarized = 0;
  for (const t of tenants) {
    // Each tenant's entitlement looks at every active tenant: with thousands of tenants the summary
    // alone would hold the event loop, so it yields like the run does.
    if (++summarized % SUMMARY_SLICE === 0 && sliceSteps !== Infinity) yield { at: now, steps };
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
    steps,
    ...(truncatedAtMs !== undefined ? { truncatedAtMs } : {}),
  };
}

/** Tenants summarized between two yields of a sliced run (see the summary loop in simulation). */
const SUMMARY_SLICE = 250;

export function simulate(policy: Policy, tenants: readonly SimTenant[], durationMs: number, maxOrder = 200): SimResult {
  const run = simulation(policy, tenants, durationMs, { maxOrder });
  for (;;) {
    const r = run.next();
    if (r.done) return r.value;
  }
}

/** Runs a simulation in slices, yielding to the event loop between them (an API call must not freeze the process). */
export async function simulateInSlices(
  policy: Policy,
  tenants: readonly SimTenant[],
  durationMs: number,
  opts: { maxOrder?: number; maxSteps: number; sliceSteps: number },
): Promise<SimResult> {
  const run = simulation(policy, tenants, durationMs, opts);
  for (;;) {
    const r = run.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
