/**
 * One Redis snapshot of cluster-wide state for a /metrics scrape, in a bounded number of round trips
 * whatever the number of tenants: every read of a downstream at once, every downstream at once. Per
 * tenant, only the `metrics.tenantSeries` tenants with the most waiting (then in flight, then recent
 * admissions) are reported; the others are summed into one `(other)` row, so the scrape's size does
 * not grow with the tenants.
 */
import type { DownstreamConfig } from '../config/file';
import { entitlements, type Policy } from '../core/policy';
import { activeTenants, allocation, allocationInputs, fairnessIndex, type TenantAllocation } from '../governance/allocation';
import type { ApiContext } from './context';
import { countJobs } from './routes/queues';

/** The tenant label of the row that sums the tenants without series of their own (not a valid tenant id). */
export const OTHER_TENANTS = '(other)';

export interface TenantRow {
  tenant: string;
  /** For `(other)`: sums, and no wait quantiles (they do not add up). */
  allocation: TenantAllocation & { lastMinuteShare: number };
}

export interface DownstreamSnapshot {
  downstream: string;
  capacity: number;
  jain: number | null;
  starving: number;
  activeTenants: number;
  inflight: number;
  stats: Record<string, number>;
  breaker: { state: string; held: number };
  /** The reported tenants, then `(other)` when some are left out. */
  tenants: TenantRow[];
}

export interface ClusterSnapshot {
  up: boolean;
  depths: Array<{ queue: string; role: string; state: string; n: number }>;
  downstreams: DownstreamSnapshot[];
  unroutedStats: Record<string, number>;
  breakerTransitions: Array<{ downstream: string; from: string; to: string; n: number }>;
}

export const EMPTY_SNAPSHOT: ClusterSnapshot = { up: false, depths: [], downstreams: [], unroutedStats: {}, breakerTransitions: [] };

/** The `k` first of `items` in `cmp` order, in order, without sorting them all (k is small, items many). */
export function topK<T>(items: readonly T[], k: number, cmp: (a: T, b: T) => number): T[] {
  const best: T[] = [];
  if (k <= 0) return best;
  for (const it of items) {
    if (best.length === k && cmp(it, best[k - 1]!) >= 0) continue;
    let i = best.length === k ? k - 1 : best.length;
    while (i > 0 && cmp(it, best[i - 1]!) < 0) i--;
    best.splice(i, 0, it);
    if (best.length > k) best.pop();
  }
  return best;
}

async function downstreamSnapshot(ctx: ApiContext, d: DownstreamConfig): Promise<DownstreamSnapshot> {
  const { governance } = ctx;
  const [inputs, policy, inflight, stats, state, waitingTotal] = await Promise.all([
    allocationInputs(governance, d.name),
    governance.mirror.readPolicy(d.name).then((p): Policy => p ?? d.policy),
    governance.reads.inFlightCount(d.name),
    governance.reads.stats(d.name),
    governance.breakers.gate(d.name),
    governance.waiting.total(d.name),
  ]);
  const fair = await fairnessIndex(governance, d.name, policy);
  const active = activeTenants(inputs);
  const waiting = (t: string) => inputs.waiting[t] ?? 0;
  const held = (t: string) => inputs.inFlight[t] ?? 0;
  const recent = (t: string) => fair.shares[t] ?? 0;
  const top = topK(active, ctx.config.metrics.tenantSeries, (a, b) => waiting(b) - waiting(a) || held(b) - held(a) || recent(b) - recent(a) || (a < b ? -1 : a > b ? 1 : 0));
  const chosen = new Set(top);
  const rest = active.filter((t) => !chosen.has(t));
  const alloc = await allocation(governance, d.name, policy, top, inputs);
  const tenants: TenantRow[] = top.map((t) => ({ tenant: t, allocation: { ...alloc[t]!, lastMinuteShare: recent(t) } }));
  const capacity = inputs.capacity ?? policy.capacity;
  if (rest.length > 0) {
    const shares = entitlements({ ...policy, capacity }, active);
    let entitlement: number | null = policy.kind === 'unlimited' ? null : 0;
    const sum: TenantAllocation & { lastMinuteShare: number } = {
      entitlement: null, inFlight: 0, share: 0, borrowed: 0, waiting: 0, waitP50Ms: null, waitP99Ms: null, admittedPerMinute: 0, lastMinuteShare: 0,
    };
    for (const t of rest) {
      sum.waiting += waiting(t);
      sum.inFlight += held(t);
      sum.lastMinuteShare += recent(t);
      if (entitlement !== null) entitlement += shares.get(t) ?? 0;
    }
    sum.entitlement = entitlement;
    sum.share = capacity > 0 ? sum.inFlight / capacity : 0;
    tenants.push({ tenant: OTHER_TENANTS, allocation: sum });
  }
  const bound = Date.now() - ctx.config.observer.starvationMs;
  return {
    downstream: d.name,
    capacity,
    jain: fair.jain,
    starving: inputs.queued.filter((q) => q.since < bound).length,
    activeTenants: active.length,
    inflight,
    stats,
    breaker: { state, held: state === 'closed' ? 0 : waitingTotal },
    tenants,
  };
}

export async function loadClusterSnapshot(ctx: ApiContext): Promise<ClusterSnapshot> {
  try {
    const [depths, downstreams, unroutedStats, breakerTransitions] = await Promise.all([
      Promise.all(
        ctx.topology.all().map(async ({ role, queue }) => Object.entries(await countJobs(queue)).map(([state, n]) => ({ queue: queue.name, role, state, n }))),
      ).then((d) => d.flat()),
      Promise.all(ctx.config.downstreams.map((d) => downstreamSnapshot(ctx, d))),
      ctx.governance.reads.stats(undefined),
      ctx.governance.breakers.transitionCounts(),
    ]);
    return { up: true, depths, downstreams, unroutedStats, breakerTransitions };
  } catch {
    return EMPTY_SNAPSHOT;
  }
}
