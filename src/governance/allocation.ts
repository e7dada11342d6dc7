/**
 * How a downstream's capacity is shared right now: per tenant, what the policy entitles it to, what it
 * holds, what it borrows, what waits, how long waits take. Read from Redis; used by the usage endpoint,
 * the fairness metrics, job explanations and backpressure.
 */
import { percentile } from '../core/stats';
import { entitlementOf, entitlements, reserveOf, weightOf, type Policy } from '../core/policy';
import { jainIndex } from '../core/simulate';
import type { Governance } from '../redis/governance';

export interface TenantAllocation {
  /** Capacity units the policy entitles the tenant to now (null: no cap, `unlimited`). */
  entitlement: number | null;
  inFlight: number;
  /** inFlight / capacity. */
  share: number;
  /** Units held beyond its reserve (reserved policy). */
  borrowed: number;
  waiting: number;
  waitP50Ms: number | null;
  waitP99Ms: number | null;
  /** Cost units admitted per minute, averaged over the last five minutes. */
  admittedPerMinute: number;
}

/**
 * A tenant's recent admission rate (jobs per ms) from its latest admissions out of the waiting place
 * within `windowMs`; undefined with fewer than two.
 */
export function recentRate(samples: ReadonlyArray<{ at: number }>, now: number, windowMs = 300_000): number | undefined {
  const recent = samples.filter((s) => s.at >= now - windowMs).map((s) => s.at);
  if (recent.length < 2) return undefined;
  const span = Math.max(...recent) - Math.min(...recent);
  return span > 0 ? (recent.length - 1) / span : undefined;
}

/** What an allocation is computed from: one read of a downstream's live state (every tenant at once). */
export interface AllocationInputs {
  waiting: Record<string, number>;
  inFlight: Record<string, number>;
  queued: Array<{ tenantId: string; since: number }>;
  /** The current minute first, then the five before. */
  minutes: Array<{ minute: number; byTenant: Record<string, number> }>;
  capacity: number | undefined;
}

export async function allocationInputs(governance: Governance, downstream: string): Promise<AllocationInputs> {
  const [waiting, inFlight, queued, minutes, capacity] = await Promise.all([
    governance.waiting.byTenant(downstream),
    governance.reads.inFlightByTenant(downstream),
    governance.waiting.queuedTenants(downstream),
    governance.reads.admissionsByMinute(downstream, 5),
    governance.mirror.effectiveCapacity(downstream),
  ]);
  return { waiting, inFlight, queued, minutes, capacity };
}

/** Tenants with work on the downstream: waiting, in flight or queued for service. */
export function activeTenants(inputs: AllocationInputs): string[] {
  const set = new Set(Object.keys(inputs.waiting));
  for (const t of Object.keys(inputs.inFlight)) set.add(t);
  for (const q of inputs.queued) set.add(q.tenantId);
  return [...set];
}

/**
 * Allocation of `tenants` (default: every active one). Linear in the active tenants: entitlements in
 * one pass, and the wait samples of the reported tenants read at once.
 */
export async function allocation(
  governance: Governance,
  downstream: string,
  policy: Policy,
  tenants?: readonly string[],
  given?: AllocationInputs,
): Promise<Record<string, TenantAllocation>> {
  const inputs = given ?? (await allocationInputs(governance, downstream));
  const { waiting, inFlight, minutes, capacity } = inputs;
  const effective: Policy = { ...policy, capacity: capacity ?? policy.capacity };
  const active = activeTenants(inputs);
  const shares = entitlements(effective, active);
  const report = tenants ?? active;
  const samples = await Promise.all(report.map((t) => governance.waiting.waitSamples(downstream, t)));
  const out: Record<string, TenantAllocation> = {};
  report.forEach((t, i) => {
    const waits = samples[i]!.map((w) => w.waitMs);
    const held = inFlight[t] ?? 0;
    const perMinute = minutes.slice(1).reduce((s, m) => s + (m.byTenant[t] ?? 0), 0) / 5;
    out[t] = {
      entitlement: shares.has(t) ? shares.get(t)! : entitlementOf(effective, t, active),
      inFlight: held,
      share: effective.capacity > 0 ? held / effective.capacity : 0,
      borrowed: effective.kind === 'reserved' ? Math.max(0, held - reserveOf(effective, t)) : 0,
      waiting: waiting[t] ?? 0,
      waitP50Ms: percentile(waits, 0.5),
      waitP99Ms: percentile(waits, 0.99),
      admittedPerMinute: perMinute,
    };
  });
  return out;
}

/**
 * Jain's index of weight-normalised admissions over the recent window (the current minute and the one
 * before), with each tenant's share of them (null: nothing admitted).
 */
export async function fairnessIndex(governance: Governance, downstream: string, policy: Policy): Promise<{ jain: number | null; shares: Record<string, number> }> {
  const buckets = await governance.reads.admissionsByMinute(downstream, 1);
  const sums = new Map<string, number>();
  for (const b of buckets) for (const [t, n] of Object.entries(b.byTenant)) sums.set(t, (sums.get(t) ?? 0) + n);
  const entries = [...sums];
  const total = entries.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return { jain: null, shares: {} };
  return {
    jain: jainIndex(entries.map(([t, n]) => n / weightOf(policy, t))),
    shares: Object.fromEntries(entries.map(([t, n]) => [t, n / total])),
  };
}
