/**
 * The definitions mirror: quota, throttle and allocation-policy definitions as Postgres holds them,
 * written where the scripts read them (by the API on a change, by the sync after a loss), with the
 * mirror's version so a Redis that lost them is noticed (intake then decides nothing).
 */
import type { Policy } from '../core/policy';
import type { QuotaDef, ThrottleDef } from '../core/quota';
import { encodeQuota, encodeTenantPolicy, encodeThrottle } from './codec';
import { scriptKeys } from './script-keys';
import { GovernanceStore } from './store';

export class DefinitionsMirror extends GovernanceStore {
  async writeDefaultQuota(def: QuotaDef): Promise<void> {
    await this.redis.set(this.keys.quotaDefault(), encodeQuota(def));
  }

  /** Replaces the tenant's quota definitions (an empty list removes them). */
  async writeTenantQuotas(tenantId: string, defs: readonly QuotaDef[]): Promise<void> {
    const key = this.keys.quotaDefs(tenantId);
    const multi = this.redis.multi().del(key);
    if (defs.length > 0) multi.hset(key, Object.fromEntries(defs.map((d) => [d.id, encodeQuota(d)]))).sadd(this.keys.quotaTenants(), tenantId);
    else multi.srem(this.keys.quotaTenants(), tenantId);
    await multi.exec();
  }

  async writeThrottle(def: ThrottleDef): Promise<void> {
    const multi = this.redis.multi().hset(this.keys.throttles(), def.id, encodeThrottle(def)).sadd(this.keys.throttlesOf(def.tenantId), def.id);
    if (def.tenantId !== undefined) multi.sadd(this.keys.throttleTenants(), def.tenantId);
    await multi.exec();
  }

  async removeThrottle(def: Pick<ThrottleDef, 'id' | 'tenantId'>): Promise<void> {
    await this.redis.multi().hdel(this.keys.throttles(), def.id).srem(this.keys.throttlesOf(def.tenantId), def.id).del(this.keys.throttleState(def.id)).exec();
  }

  /** Rebuilds the whole mirror from Postgres rows (after a flush, or when a change was not mirrored). */
  async replaceDefinitions(quotasByTenant: ReadonlyMap<string, QuotaDef[]>, throttleDefs: readonly ThrottleDef[], version: number): Promise<void> {
    const k = this.keys;
    const [staleQuotaTenants, staleThrottleTenants] = await Promise.all([
      this.redis.smembers(k.quotaTenants()),
      this.redis.smembers(k.throttleTenants()),
    ]);
    const multi = this.redis.multi();
    for (const t of staleQuotaTenants) if (!quotasByTenant.has(t)) multi.del(k.quotaDefs(t));
    multi.del(k.quotaTenants());
    for (const [tenant, defs] of quotasByTenant) {
      multi.del(k.quotaDefs(tenant));
      if (defs.length > 0) multi.hset(k.quotaDefs(tenant), Object.fromEntries(defs.map((d) => [d.id, encodeQuota(d)]))).sadd(k.quotaTenants(), tenant);
    }
    multi.del(k.throttles(), k.throttlesOf(undefined), k.throttleTenants());
    for (const t of staleThrottleTenants) multi.del(k.throttlesOf(t));
    for (const d of throttleDefs) {
      multi.hset(k.throttles(), d.id, encodeThrottle(d)).sadd(k.throttlesOf(d.tenantId), d.id);
      if (d.tenantId !== undefined) multi.sadd(k.throttleTenants(), d.tenantId);
    }
    multi.set(k.mirrorVersion(), version);
    await multi.exec();
  }

  /** Records each downstream's execution queue, for readers without the config (waitForExecution). */
  async writeExecQueues(queues: Record<string, string>): Promise<void> {
    if (Object.keys(queues).length > 0) await this.redis.hset(this.keys.execQueues(), queues);
  }

  /**
   * Writes a downstream's allocation policy where the scheduler reads it. A config policy never
   * replaces a runtime one (set over the API); the sync and the API write runtime policies.
   */
  async writePolicy(downstream: string, policy: Policy, source: 'config' | 'runtime', opts: { force?: boolean } = {}): Promise<boolean> {
    const polKey = this.keys.downstream(downstream, 'policy');
    if (source === 'config' && !opts.force && (await this.redis.hget(polKey, 'src')) === 'runtime') return false;
    const multi = this.redis
      .multi()
      .del(polKey, this.keys.downstream(downstream, 'policyTenants'))
      .hset(polKey, {
        src: source,
        k: policy.kind,
        cap: policy.capacity,
        dw: policy.defaultWeight,
        dt: policy.defaultTier,
        ...(policy.agingMs !== undefined ? { ag: policy.agingMs } : {}),
      });
    const tenants = Object.entries(policy.tenants);
    if (tenants.length > 0) multi.hset(this.keys.downstream(downstream, 'policyTenants'), Object.fromEntries(tenants.map(([t, tp]) => [t, encodeTenantPolicy(tp)])));
    await multi.exec();
    return true;
  }

  /** The policy the scheduler uses now, as mirrored in Redis (undefined before anything wrote it). */
  async readPolicy(downstream: string): Promise<Policy | undefined> {
    const [p, t] = await Promise.all([this.redis.hgetall(this.keys.downstream(downstream, 'policy')), this.redis.hgetall(this.keys.downstream(downstream, 'policyTenants'))]);
    if (!p.k) return undefined;
    const tenants: Policy['tenants'] = {};
    for (const [tenant, raw] of Object.entries(t)) {
      const v = JSON.parse(raw) as { w?: number; tier?: number; r?: number; bl?: number; ms?: number };
      tenants[tenant] = {
        ...(v.w !== undefined ? { weight: v.w } : {}),
        ...(v.tier !== undefined ? { tier: v.tier } : {}),
        ...(v.r !== undefined ? { reserve: v.r } : {}),
        ...(v.bl !== undefined ? { borrowLimit: v.bl } : {}),
        ...(v.ms !== undefined ? { maxShare: v.ms } : {}),
      };
    }
    return {
      kind: p.k as Policy['kind'],
      capacity: Number(p.cap),
      defaultWeight: Number(p.dw ?? 1),
      defaultTier: Number(p.dt ?? 1),
      ...(p.ag !== undefined ? { agingMs: Number(p.ag) } : {}),
      tenants,
    };
  }

  /** Capacity in force: the adaptive capacity when one is set, else the policy's. */
  async effectiveCapacity(downstream: string): Promise<number | undefined> {
    const [adaptive, configured] = await Promise.all([
      this.redis.get(this.keys.downstream(downstream, 'adaptiveCapacity')),
      this.redis.hget(this.keys.downstream(downstream, 'policy'), 'cap'),
    ]);
    const v = adaptive ?? configured;
    return v === null ? undefined : Number(v);
  }

  async version(): Promise<number> {
    return Number((await this.redis.get(this.keys.mirrorVersion())) ?? 0);
  }

  /** False when Redis has no definitions mirror at all (never written, or lost with its data). */
  async exists(): Promise<boolean> {
    return (await this.redis.exists(this.keys.mirrorVersion())) === 1;
  }

  /** Records that the mirror moved from `from` to `to`; false when it was not at `from` (a gap). */
  async advance(from: number, to: number): Promise<boolean> {
    return (await this.scripts.advanceVersion(scriptKeys.advanceVersion(this.keys), [String(from), String(to)])) === 1;
  }
}
