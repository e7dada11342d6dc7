/**
 * Allocation policies: when a downstream's capacity binds, which tenant's job goes next.
 *
 * Every policy orders the tenants that have an eligible waiting job by a key (tier, virtual time) and
 * serves the lowest key that may be admitted:
 * - virtual time implements weighted fair queuing: serving a job of cost c advances the tenant's time
 *   by c / weight, and a tenant that becomes eligible starts at the current virtual time (an idle
 *   tenant banks no credit), so over any busy period each tenant's admissions are proportional to its
 *   weight among the tenants that had work (weighted max-min);
 * - the tier orders groups strictly: `priority` uses each tenant's tier (lower first), with optional
 *   aging (a tenant eligible for `agingMs` without being served jumps ahead of every tier); `reserved`
 *   puts tenants below their reserve ahead of tenants that would borrow.
 * Limits then decide whether the chosen tenant's job may start: the downstream's capacity (in cost
 * units; none for `unlimited`), a tenant's `maxShare` of capacity (`max-limit`), and for `reserved` a
 * borrower's `borrowLimit` and the reserve still owed to other tenants that have work (reclaim without
 * preemption: borrowed slots are simply not refilled while an owner waits).
 *
 * Pure and clock-free (time is an argument). src/redis/lua/includes/policy.lua applies the same
 * rules in Redis; the scheduler differential test replays workloads through both.
 */
import { MIN_WEIGHT } from './limits';

export const POLICY_KINDS = ['unlimited', 'proportional', 'priority', 'reserved', 'max-limit'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

export interface TenantPolicy {
  /** Share weight (proportional, and inside a tier). Default: the policy's defaultWeight. */
  weight?: number;
  /** Priority tier (priority policy); lower is served first. Default: the policy's defaultTier. */
  tier?: number;
  /** Capacity units always available to this tenant (reserved policy). */
  reserve?: number;
  /** Units this tenant may use beyond its reserve (reserved policy). Default: unbounded. */
  borrowLimit?: number;
  /** Hard cap as a share of capacity, 0-1 (max-limit policy; also honoured by the others if set). */
  maxShare?: number;
}

export interface Policy {
  kind: PolicyKind;
  /** Max admitted, unfinished cost units of the downstream (ignored by `unlimited`). */
  capacity: number;
  defaultWeight: number;
  defaultTier: number;
  /** priority policy: a tenant eligible this long without being served is served before any tier. */
  agingMs?: number;
  tenants: Record<string, TenantPolicy>;
}

/** Tier key of tenants promoted by aging: ahead of every configured tier. */
export const AGED_TIER = -1;

export function weightOf(p: Policy, tenant: string): number {
  return Math.max(p.tenants[tenant]?.weight ?? p.defaultWeight, MIN_WEIGHT);
}

export function reserveOf(p: Policy, tenant: string): number {
  return p.kind === 'reserved' ? (p.tenants[tenant]?.reserve ?? 0) : 0;
}

/** The tier a tenant is served in, given how much it has in flight and since when it waits. */
export function tierOf(p: Policy, tenant: string, inflight: number, eligibleSince: number, now: number): number {
  if (p.kind === 'priority') {
    if (p.agingMs !== undefined && now - eligibleSince >= p.agingMs) return AGED_TIER;
    return p.tenants[tenant]?.tier ?? p.defaultTier;
  }
  if (p.kind === 'reserved') return inflight < reserveOf(p, tenant) ? 0 : 1;
  return 0;
}

/** A tenant's hard cap in cost units (maxShare of capacity), if any. */
export function capOf(p: Policy, tenant: string): number | undefined {
  const share = p.tenants[tenant]?.maxShare;
  return share === undefined ? undefined : Math.floor(share * p.capacity);
}

export interface Candidate {
  tenant: string;
  /** Virtual time the tenant is queued at (its start tag). */
  vt: number;
  /** Cost units this tenant has in flight on the downstream. */
  inflight: number;
  /** Cost of the job the tenant would start next. */
  headCost: number;
  /** When the tenant last became eligible or was last served (aging). */
  since: number;
}

export type Pick =
  | { kind: 'admit'; tenant: string }
  /** The downstream is full for everyone still waiting: wait for a release. */
  | { kind: 'full' }
  /** Nobody is eligible. */
  | { kind: 'idle' };

/** Order of service: tier, then virtual time, then tenant id (a stable tie-break). */
export function orderKey(p: Policy, c: Candidate, now: number): [number, number, string] {
  return [tierOf(p, c.tenant, c.inflight, c.since, now), c.vt, c.tenant];
}

export function compareKeys(a: [number, number, string], b: [number, number, string]): number {
  return a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0);
}

export type Blocked = 'share' | 'borrow';

/**
 * May `c` start its next job now? `used`: cost units in flight on the downstream; `owed`: reserve units
 * other waiting tenants are still owed (reserved policy). A tenant-level refusal (`share`, `borrow`)
 * parks that tenant until one of its jobs ends; a capacity refusal stops the scheduler for everyone.
 */
export function admissible(p: Policy, c: Candidate, used: number, owed: number): 'yes' | 'capacity' | Blocked {
  const cap = capOf(p, c.tenant);
  if (cap !== undefined && c.inflight + c.headCost > cap) return 'share';
  if (p.kind === 'unlimited') return 'yes';
  if (p.kind === 'reserved') {
    const reserve = reserveOf(p, c.tenant);
    if (c.inflight + c.headCost <= reserve) return used + c.headCost <= p.capacity ? 'yes' : 'capacity';
    const borrowLimit = p.tenants[c.tenant]?.borrowLimit;
    const borrowed = Math.max(0, c.inflight + c.headCost - reserve);
    if (borrowLimit !== undefined && borrowed > borrowLimit) return 'borrow';
    return used + c.headCost + owed <= p.capacity ? 'yes' : 'capacity';
  }
  return used + c.headCost <= p.capacity ? 'yes' : 'capacity';
}

/**
 * Why a job of `cost` can never be admitted for `tenant` under the policy (it needs more than the
 * capacity, the tenant's max share of it, or its reserve plus borrow limit), or undefined. Such a job
 * is refused instead of waiting at the head of the scheduler for good.
 */
export function beyondPolicy(p: Policy, tenant: string, downstream: string, cost: number): string | undefined {
  let limit: number | undefined;
  let what = '';
  if (p.kind !== 'unlimited') [limit, what] = [p.capacity, `the capacity of ${downstream}`];
  const tp = p.tenants[tenant];
  if (tp?.maxShare !== undefined) {
    const share = Math.floor(tp.maxShare * p.capacity);
    if (limit === undefined || share < limit) [limit, what] = [share, `its max share of ${downstream} (${tp.maxShare} of ${p.capacity})`];
  }
  if (p.kind === 'reserved' && tp?.borrowLimit !== undefined) {
    const most = reserveOf(p, tenant) + tp.borrowLimit;
    if (limit === undefined || most < limit) [limit, what] = [most, `its reserve plus borrow limit on ${downstream}`];
  }
  return limit !== undefined && cost > limit ? `cost ${cost} is above ${what}, ${limit} units: ${downstream} could never admit it` : undefined;
}

/** Reserve units owed to waiting tenants other than `except`: held back from borrowers. */
export function owedReserve(p: Policy, candidates: readonly Candidate[], except: string): number {
  if (p.kind !== 'reserved') return 0;
  let owed = 0;
  for (const c of candidates) if (c.tenant !== except) owed += Math.max(0, reserveOf(p, c.tenant) - c.inflight);
  return owed;
}

/** Entitlement under the policy given which tenants are active (waiting or running). */
export function entitlementOf(policy: Policy, tenant: string, active: readonly string[]): number | null {
  if (policy.kind === 'unlimited') return null;
  const set = new Set([...active, tenant]);
  const totalWeight = [...set].reduce((s, t) => s + weightOf(policy, t), 0);
  let share = (weightOf(policy, tenant) / totalWeight) * policy.capacity;
  if (policy.kind === 'priority') {
    // Strict tiers: only the best tier present shares the capacity.
    const tierOf = (t: string) => policy.tenants[t]?.tier ?? policy.defaultTier;
    const best = Math.min(...[...set].map(tierOf));
    if (tierOf(tenant) !== best) share = 0;
    else {
      const peers = [...set].filter((t) => tierOf(t) === best);
      share = (weightOf(policy, tenant) / peers.reduce((s, t) => s + weightOf(policy, t), 0)) * policy.capacity;
    }
  }
  if (policy.kind === 'reserved') share = Math.max(reserveOf(policy, tenant), share);
  const cap = capOf(policy, tenant);
  return cap === undefined ? share : Math.min(cap, share);
}


/**
 * `entitlementOf` for every tenant of `active` at once, in one pass over them (entitlementOf walks the
 * whole set per tenant: quadratic in the number of tenants with work).
 */
export function entitlements(policy: Policy, active: readonly string[]): Map<string, number | null> {
  const set = [...new Set(active)];
  const out = new Map<string, number | null>();
  if (policy.kind === 'unlimited') {
    for (const t of set) out.set(t, null);
    return out;
  }
  const tier = (t: string) => policy.tenants[t]?.tier ?? policy.defaultTier;
  let totalWeight = 0;
  let best = Infinity;
  for (const t of set) {
    totalWeight += weightOf(policy, t);
    best = Math.min(best, tier(t));
  }
  let peerWeight = 0;
  if (policy.kind === 'priority') for (const t of set) if (tier(t) === best) peerWeight += weightOf(policy, t);
  for (const t of set) {
    let share = (weightOf(policy, t) / totalWeight) * policy.capacity;
    if (policy.kind === 'priority') share = tier(t) !== best ? 0 : (weightOf(policy, t) / peerWeight) * policy.capacity;
    if (policy.kind === 'reserved') share = Math.max(reserveOf(policy, t), share);
    const cap = capOf(policy, t);
    out.set(t, cap === undefined ? share : Math.min(cap, share));
  }
  return out;
}
