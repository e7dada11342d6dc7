/**
 * A tenant's quota usage right now: rate tokens left, jobs in flight, period usage against limits,
 * and jobs waiting, read from the live state in Redis.
 */
import type { Redis } from 'ioredis';
import { gcraTokens } from '../core/gcra';
import { PERIODS, windowsAt, type Period } from '../core/periods';
import { rateOf, type QuotaDef } from '../core/quota';
import type { Governance } from '../redis/governance';
import type { Policy } from '../core/policy';
import { allocation, type TenantAllocation } from './allocation';

export interface QuotaUsage {
  quotaId: string;
  scope: { jobType?: string; downstream?: string };
  rateTokens?: { available: number; burst: number; rate: number };
  inFlight: number;
  maxConcurrent?: number;
  periods: Partial<Record<Period, { used: number; limit: number; resetsAt: string }>>;
  paused: boolean;
}

export interface TenantUsage {
  tenantId: string;
  quotas: QuotaUsage[];
  waiting: { total: number; byDownstream: Record<string, number> };
  /** Per downstream: the tenant's entitlement under the policy, what it holds, borrows and waits. */
  allocation: Record<string, TenantAllocation & { policy: string }>;
}

const FIELDS: Record<Period, [string, string]> = { hour: ['hw', 'hn'], day: ['dw', 'dn'], month: ['mw', 'mn'] };

export async function tenantUsage(
  redis: Redis,
  governance: Governance,
  tenantId: string,
  defs: readonly QuotaDef[],
  fallback: QuotaDef,
  policies: ReadonlyArray<{ downstream: string; policy: Policy }>,
  now = Date.now(),
): Promise<TenantUsage> {
  const downstreams = policies.map((p) => p.downstream);
  const windows = windowsAt(now);
  // The default quota shows when it governs something: the tenant has no quota of its own, or it
  // has state under the default (jobs its own quotas do not match).
  const defaultState = await redis.exists(governance.keys.quotaState('default', tenantId));
  const applicable = defs.length === 0 || defaultState ? [...defs, fallback] : [...defs];
  const quotas: QuotaUsage[] = [];
  for (const def of applicable) {
    const st = await redis.hgetall(governance.keys.quotaState(def.id, tenantId));
    const periods: QuotaUsage['periods'] = {};
    for (const p of PERIODS) {
      const limit = def.periods?.[p];
      if (limit === undefined) continue;
      const [wf, nf] = FIELDS[p];
      const used = Number(st[wf]) === windows[p].start ? Number(st[nf] ?? 0) : 0;
      periods[p] = { used, limit, resetsAt: new Date(windows[p].end).toISOString() };
    }
    const rate = rateOf(def);
    quotas.push({
      quotaId: def.id,
      scope: { ...(def.jobType !== undefined ? { jobType: def.jobType } : {}), ...(def.downstream !== undefined ? { downstream: def.downstream } : {}) },
      ...(rate ? { rateTokens: { available: gcraTokens(Number(st.tat ?? 0), now, rate), burst: rate.burst, rate: rate.rate } } : {}),
      inFlight: Number(st.inf ?? 0),
      ...(def.maxConcurrent !== undefined ? { maxConcurrent: def.maxConcurrent } : {}),
      periods,
      paused: def.paused,
    });
  }
  const byDownstream: Record<string, number> = {};
  let total = 0;
  for (const d of downstreams) {
    const n = Number((await redis.hget(governance.keys.downstream(d, 'waitingCounts'), tenantId)) ?? 0);
    if (n > 0) {
      byDownstream[d] = n;
      total += n;
    }
  }
  const alloc: TenantUsage['allocation'] = {};
  for (const { downstream, policy } of policies) {
    const a = (await allocation(governance, downstream, policy, [tenantId]))[tenantId]!;
    alloc[downstream] = { policy: policy.kind, ...a };
  }
  return { tenantId, quotas, waiting: { total, byDownstream }, allocation: alloc };
}
