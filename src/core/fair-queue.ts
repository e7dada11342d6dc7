/**
 * The scheduler of one downstream as a pure state machine: jobs wait per tenant; `drain` admits in
 * the policy's order while the policy has room; `release` gives capacity back. The same steps, in the
 * same order, as admitWaiting-1.lua and release-1.lua (the scheduler differential test replays random
 * operations through both), minus what the Lua adds around them (quotas, flows, leases).
 */
import { admissible, beyondPolicy, compareKeys, orderKey, owedReserve, weightOf, type Candidate, type Policy } from './policy';

export interface QueuedJob<T = unknown> {
  cost: number;
  item: T;
}

export class FairQueue<T = unknown> {
  private readonly queues = new Map<string, Array<QueuedJob<T>>>();
  private readonly inflight = new Map<string, number>();
  private readonly tvt = new Map<string, number>();
  /** Tenants queued for service, at their start tag (virtual time). */
  private readonly start = new Map<string, number>();
  private readonly since = new Map<string, number>();
  /** Tenants at their own limit of the policy, until one of their jobs ends. */
  private readonly parked = new Set<string>();
  private gvt = 0;
  private used = 0;

  constructor(private policy: Policy) {}

  setPolicy(policy: Policy): void {
    this.policy = policy;
  }

  /** Tenants queued for service now (the scheduler looks at each of them per decision). */
  get eligibleTenants(): number {
    return this.start.size;
  }

  waiting(tenant: string): number {
    return this.queues.get(tenant)?.length ?? 0;
  }

  inFlight(tenant: string): number {
    return this.inflight.get(tenant) ?? 0;
  }

  get usedCapacity(): number {
    return this.used;
  }

  add(tenant: string, job: QueuedJob<T>, now: number): void {
    let q = this.queues.get(tenant);
    if (!q) this.queues.set(tenant, (q = []));
    q.push(job);
    this.makeEligible(tenant, now);
  }

  /** Capacity already in use when the queue starts (jobs admitted before). */
  charge(tenant: string, cost: number): void {
    this.inflight.set(tenant, this.inFlight(tenant) + cost);
    this.used += cost;
  }

  release(tenant: string, cost: number, now: number): void {
    this.inflight.set(tenant, this.inFlight(tenant) - cost);
    this.used -= cost;
    if (this.parked.delete(tenant)) this.makeEligible(tenant, now);
  }

  /**
   * Admits in order while the policy has room; returns what was admitted, in order. A head job the
   * policy could never admit (beyondPolicy) is taken out and pushed to `refused`, like admitWaiting-1.lua
   * dead-letters it.
   */
  drain(now: number, max = Infinity, refused?: Array<{ tenant: string; job: QueuedJob<T> }>): Array<{ tenant: string; job: QueuedJob<T> }> {
    const out: Array<{ tenant: string; job: QueuedJob<T> }> = [];
    while (out.length < max) {
      const candidates: Candidate[] = [...this.start].map(([tenant, vt]) => ({
        tenant,
        vt,
        inflight: this.inFlight(tenant),
        headCost: this.queues.get(tenant)![0]!.cost,
        since: this.since.get(tenant)!,
      }));
      if (candidates.length === 0) break;
      // The candidate with the lowest order key (keys are unique: the tenant id breaks ties).
      let c = candidates[0]!;
      let best = orderKey(this.policy, c, now);
      for (const x of candidates) {
        const key = orderKey(this.policy, x, now);
        if (compareKeys(key, best) < 0) [c, best] = [x, key];
      }
      if (beyondPolicy(this.policy, c.tenant, '', c.headCost) !== undefined) {
        const job = this.queues.get(c.tenant)!.shift()!;
        refused?.push({ tenant: c.tenant, job });
        if (this.queues.get(c.tenant)!.length === 0) this.start.delete(c.tenant);
        continue;
      }
      const verdict = admissible(this.policy, c, this.used, owedReserve(this.policy, candidates, c.tenant));
      if (verdict === 'capacity') break;
      if (verdict !== 'yes') {
        this.start.delete(c.tenant);
        this.parked.add(c.tenant);
        continue;
      }
      const job = this.queues.get(c.tenant)!.shift()!;
      this.charge(c.tenant, job.cost);
      this.gvt = c.vt;
      const finish = c.vt + job.cost / weightOf(this.policy, c.tenant);
      this.tvt.set(c.tenant, finish);
      this.since.set(c.tenant, now);
      if (this.queues.get(c.tenant)!.length > 0) this.start.set(c.tenant, finish);
      else this.start.delete(c.tenant);
      out.push({ tenant: c.tenant, job });
    }
    return out;
  }

  private makeEligible(tenant: string, now: number): void {
    if (!this.start.has(tenant) && !this.parked.has(tenant) && this.waiting(tenant) > 0) {
      this.start.set(tenant, Math.max(this.gvt, this.tvt.get(tenant) ?? 0));
      this.since.set(tenant, now);
    }
  }
}
