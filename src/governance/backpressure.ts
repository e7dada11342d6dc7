/**
 * Backpressure: how hard a downstream and a tenant are pushing against their limits, as a level
 * (`ok`, `slow-down`, `shed`) and a suggested retry-after, so producers can slow down before they
 * flood. Read from Redis; served by `GET /api/v1/backpressure` and by the producer helper
 * (src/client.ts).
 *
 * Downstream: `shed` while load shedding is on; `slow-down` from the shedding low mark (or, without
 * shedding, from ten times the capacity) of waiting jobs; retry-after = the waiting work divided by
 * the recent admission rate. Tenant: `shed` when its backlog is full and new jobs would be refused;
 * `slow-down` at 80 % of it, or when its job type waits on a rate, period, pause or concurrency
 * limit (retry-after: when that hold ends, if known); never better than its downstream's level.
 */
import type { Config, DownstreamConfig } from '../config/file';
import type { Governance } from '../redis/governance';

export type Level = 'ok' | 'slow-down' | 'shed';

export interface DownstreamPressure {
  downstream: string;
  level: Level;
  waiting: number;
  shedding: boolean;
  slowDownAt: number;
  shedAt?: number;
  retryAfterMs?: number;
}

export interface TenantPressure {
  tenantId: string;
  downstream: string;
  level: Level;
  waiting: number;
  reason?: string;
  retryAfterMs?: number;
}

const RANK: Record<Level, number> = { ok: 0, 'slow-down': 1, shed: 2 };
const worse = (a: Level, b: Level): Level => (RANK[a] >= RANK[b] ? a : b);
const HOUR = 3_600_000;

/** Recent admissions per ms on a downstream (all tenants, or one): the current and previous minutes. */
async function admissionRate(governance: Governance, downstream: string, now: number, tenantId?: string): Promise<number> {
  const buckets = await governance.reads.admissionsByMinute(downstream, 1, now);
  const total = buckets.reduce((s, b) => s + (tenantId === undefined ? Object.values(b.byTenant).reduce((x, y) => x + y, 0) : (b.byTenant[tenantId] ?? 0)), 0);
  return total / (60_000 + (now % 60_000));
}

export async function downstreamPressure(governance: Governance, d: DownstreamConfig, now = Date.now()): Promise<DownstreamPressure> {
  const [waiting, shedding, capacity] = await Promise.all([governance.waiting.total(d.name), governance.waiting.isShedding(d.name), governance.mirror.effectiveCapacity(d.name)]);
  const slowDownAt = d.shedding?.low ?? 10 * (capacity ?? d.capacity);
  const level: Level = shedding ? 'shed' : waiting >= slowDownAt ? 'slow-down' : 'ok';
  const out: DownstreamPressure = { downstream: d.name, level, waiting, shedding, slowDownAt, ...(d.shedding ? { shedAt: d.shedding.high } : {}) };
  if (level !== 'ok') {
    const rate = await admissionRate(governance, d.name, now);
    out.retryAfterMs = Math.round(rate > 0 ? Math.min(HOUR, waiting / rate) : 1000);
  }
  return out;
}

export async function tenantPressure(
  governance: Governance,
  config: Config,
  d: DownstreamConfig,
  tenantId: string,
  jobName?: string,
  now = Date.now(),
): Promise<TenantPressure> {
  const [ds, byTenant] = await Promise.all([downstreamPressure(governance, d, now), governance.waiting.byTenant(d.name)]);
  const waiting = byTenant[tenantId] ?? 0;
  const max = config.tenantLimits.maxWaiting;
  let level: Level = 'ok';
  let reason: string | undefined;
  let retryAfterMs: number | undefined;
  if (max !== undefined && config.tenantLimits.onBacklogFull === 'reject' && waiting >= max) {
    level = 'shed';
    reason = 'tenant-backlog-full';
  } else if (max !== undefined && waiting >= 0.8 * max) {
    level = 'slow-down';
    reason = 'tenant-backlog';
  }
  if (jobName !== undefined && level === 'ok') {
    const flow = await governance.waiting.flowState(d.name, tenantId, jobName);
    if (flow && flow.state !== 'eligible') {
      level = 'slow-down';
      reason = flow.reason;
      if (flow.until !== undefined) retryAfterMs = Math.max(0, flow.until - now);
    }
  }
  if (level !== 'ok' && retryAfterMs === undefined) {
    const rate = await admissionRate(governance, d.name, now, tenantId);
    retryAfterMs = Math.round(rate > 0 ? Math.min(HOUR, waiting / rate) : 1000);
  }
  if (RANK[ds.level] > RANK[level]) {
    return { tenantId, downstream: d.name, level: ds.level, waiting, reason: ds.shedding ? 'downstream-shedding' : 'downstream-backlog', ...(ds.retryAfterMs !== undefined ? { retryAfterMs: ds.retryAfterMs } : {}) };
  }
  return { tenantId, downstream: d.name, level: worse(level, ds.level), waiting, ...(reason ? { reason } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
}
