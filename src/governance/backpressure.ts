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

/** Admissions of the current and previous minute, all tenants and per tenant (one read per downstream). */
interface RecentAdmissions {
  total: number;
  byTenant: Map<string, number>;
}

async function recentAdmissions(governance: Governance, downstream: string, now: number): Promise<RecentAdmissions> {
  const buckets = await governance.reads.admissionsByMinute(downstream, 1, now);
  const byTenant = new Map<string, number>();
  let total = 0;
  for (const b of buckets) {
    for (const [t, n] of Object.entries(b.byTenant)) {
      byTenant.set(t, (byTenant.get(t) ?? 0) + n);
      total += n;
    }
  }
  return { total, byTenant };
}

/** Admissions per ms over the current and previous minutes. */
const ratePerMs = (admitted: number, now: number) => admitted / (60_000 + (now % 60_000));

const retryAfter = (waiting: number, rate: number) => Math.round(rate > 0 ? Math.min(HOUR, waiting / rate) : 1000);

export async function downstreamPressure(governance: Governance, d: DownstreamConfig, now = Date.now(), admissions?: RecentAdmissions): Promise<DownstreamPressure> {
  const [waiting, shedding, capacity] = await Promise.all([governance.waiting.total(d.name), governance.waiting.isShedding(d.name), governance.mirror.effectiveCapacity(d.name)]);
  const slowDownAt = d.shedding?.low ?? 10 * (capacity ?? d.capacity);
  const level: Level = shedding ? 'shed' : waiting >= slowDownAt ? 'slow-down' : 'ok';
  const out: DownstreamPressure = { downstream: d.name, level, waiting, shedding, slowDownAt, ...(d.shedding ? { shedAt: d.shedding.high } : {}) };
  if (level !== 'ok') {
    const recent = admissions ?? (await recentAdmissions(governance, d.name, now));
    out.retryAfterMs = retryAfter(waiting, ratePerMs(recent.total, now));
  }
  return out;
}

/**
 * The pressure on each of `tenantIds` on a downstream, from one read of the downstream's state
 * (waiting counts, recent admissions) whatever their number; with `jobName`, one flow-state read per
 * tenant, all at once.
 */
export async function tenantPressures(
  governance: Governance,
  config: Config,
  d: DownstreamConfig,
  tenantIds: readonly string[],
  jobName?: string,
  now = Date.now(),
): Promise<TenantPressure[]> {
  const [admissions, byTenant] = await Promise.all([recentAdmissions(governance, d.name, now), governance.waiting.waitingOf(d.name, tenantIds)]);
  const [ds, flows] = await Promise.all([
    downstreamPressure(governance, d, now, admissions),
    jobName === undefined ? undefined : Promise.all(tenantIds.map((t) => governance.waiting.flowState(d.name, t, jobName))),
  ]);
  const max = config.tenantLimits.maxWaiting;
  return tenantIds.map((tenantId, i): TenantPressure => {
    const waiting = byTenant[tenantId] ?? 0;
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
    const flow = flows?.[i];
    if (level === 'ok' && flow && flow.state !== 'eligible') {
      level = 'slow-down';
      reason = flow.reason;
      if (flow.until !== undefined) retryAfterMs = Math.max(0, flow.until - now);
    }
    if (level !== 'ok' && retryAfterMs === undefined) retryAfterMs = retryAfter(waiting, ratePerMs(admissions.byTenant.get(tenantId) ?? 0, now));
    if (RANK[ds.level] > RANK[level]) {
      return { tenantId, downstream: d.name, level: ds.level, waiting, reason: ds.shedding ? 'downstream-shedding' : 'downstream-backlog', ...(ds.retryAfterMs !== undefined ? { retryAfterMs: ds.retryAfterMs } : {}) };
    }
    return { tenantId, downstream: d.name, level: worse(level, ds.level), waiting, ...(reason ? { reason } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  });
}

export async function tenantPressure(
  governance: Governance,
  config: Config,
  d: DownstreamConfig,
  tenantId: string,
  jobName?: string,
  now = Date.now(),
): Promise<TenantPressure> {
  return (await tenantPressures(governance, config, d, [tenantId], jobName, now))[0]!;
}
