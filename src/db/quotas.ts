/** Repository of quotas, throttles, the audit log and the definitions version (Postgres). */
import { and, asc, eq, gt, sql, type SQL } from 'drizzle-orm';
import type { QuotaDef, ThrottleDef } from '../core/quota';
import type { Db } from './client';
import { auditLog, definitionsVersion, policies, quotas, throttles } from './schema';

export type QuotaRow = typeof quotas.$inferSelect;
export type ThrottleRow = typeof throttles.$inferSelect;
/** A transaction or the database: repositories work in either. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0] | Db;

export function quotaDef(r: QuotaRow): QuotaDef {
  const periods: QuotaDef['periods'] = {};
  if (r.perHour !== null) periods.hour = r.perHour;
  if (r.perDay !== null) periods.day = r.perDay;
  if (r.perMonth !== null) periods.month = r.perMonth;
  return {
    id: `q${r.id}`,
    tenantId: r.tenantId,
    ...(r.jobType !== null ? { jobType: r.jobType } : {}),
    ...(r.downstream !== null ? { downstream: r.downstream } : {}),
    ...(r.rate !== null ? { rate: r.rate } : {}),
    ...(r.burst !== null ? { burst: r.burst } : {}),
    ...(r.maxConcurrent !== null ? { maxConcurrent: r.maxConcurrent } : {}),
    ...(Object.keys(periods).length > 0 ? { periods } : {}),
    onPeriodExceeded: r.onPeriodExceeded,
    paused: r.paused,
  };
}

export function throttleDef(r: ThrottleRow): ThrottleDef {
  return {
    id: `t${r.id}`,
    ...(r.tenantId !== null ? { tenantId: r.tenantId } : {}),
    ...(r.jobType !== null ? { jobType: r.jobType } : {}),
    action: r.action,
    ...(r.rate !== null ? { rate: r.rate } : {}),
    ...(r.burst !== null ? { burst: r.burst } : {}),
    ...(r.until !== null ? { until: r.until.getTime() } : {}),
  };
}

export interface QuotaFilter {
  tenantId?: string;
  jobType?: string;
  paused?: boolean;
  afterId?: number;
  limit: number;
}

export async function listQuotas(db: Tx, f: QuotaFilter): Promise<QuotaRow[]> {
  const where: SQL[] = [];
  if (f.tenantId !== undefined) where.push(eq(quotas.tenantId, f.tenantId));
  if (f.jobType !== undefined) where.push(eq(quotas.jobType, f.jobType));
  if (f.paused !== undefined) where.push(eq(quotas.paused, f.paused));
  if (f.afterId !== undefined) where.push(gt(quotas.id, f.afterId));
  return db
    .select()
    .from(quotas)
    .where(where.length ? and(...where) : undefined)
    .orderBy(asc(quotas.id))
    .limit(f.limit);
}

export async function quotasOfTenant(db: Tx, tenantId: string): Promise<QuotaRow[]> {
  return db.select().from(quotas).where(eq(quotas.tenantId, tenantId)).orderBy(asc(quotas.id));
}

/**
 * Serialises the changes of one resource (a tenant's quotas, a downstream's policy) until the
 * transaction ends: a read-merge-write (PATCH) or a precondition (If-Match) then sees every change
 * committed before it, and none lands between its read and its write. Keyed by the schema too, so
 * deployments in other schemas of the same database do not wait on each other.
 *
 * Kind 'mirror' (one key) serialises the writes of the Redis definitions mirror: a change mirroring
 * itself after its commit, and a rebuild of the whole mirror from Postgres reads taken under the lock,
 * so a rebuild never writes a read older than a change already mirrored.
 */
export async function lockResource(tx: Tx, kind: 'quotas' | 'policy' | 'mirror', key: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(coalesce(current_schema(), '') || ${`:${kind}:${key}`}, 0))`);
}

export async function findThrottleForUpdate(tx: Tx, id: number): Promise<ThrottleRow | undefined> {
  return (await tx.select().from(throttles).where(eq(throttles.id, id)).for('update'))[0];
}

export async function findThrottle(db: Tx, id: number): Promise<ThrottleRow | undefined> {
  return (await db.select().from(throttles).where(eq(throttles.id, id)))[0];
}

export async function allQuotas(db: Tx): Promise<QuotaRow[]> {
  return db.select().from(quotas).orderBy(asc(quotas.id));
}

export async function allThrottles(db: Tx): Promise<ThrottleRow[]> {
  return db.select().from(throttles).orderBy(asc(throttles.id));
}

export async function listThrottles(db: Tx, f: { tenantId?: string; afterId?: number; limit: number }): Promise<ThrottleRow[]> {
  const where: SQL[] = [];
  if (f.tenantId !== undefined) where.push(eq(throttles.tenantId, f.tenantId));
  if (f.afterId !== undefined) where.push(gt(throttles.id, f.afterId));
  return db
    .select()
    .from(throttles)
    .where(where.length ? and(...where) : undefined)
    .orderBy(asc(throttles.id))
    .limit(f.limit);
}

/** Bumps and returns the definitions version (creates the row on first use). */
export async function bumpVersion(tx: Tx): Promise<number> {
  const rows = await tx
    .insert(definitionsVersion)
    .values({ id: 1, version: 1 })
    .onConflictDoUpdate({ target: definitionsVersion.id, set: { version: sql`${definitionsVersion.version} + 1` } })
    .returning({ version: definitionsVersion.version });
  return rows[0]!.version;
}

export async function currentVersion(db: Tx): Promise<number> {
  const rows = await db.select().from(definitionsVersion).where(eq(definitionsVersion.id, 1));
  return rows[0]?.version ?? 0;
}

export interface AuditEntry {
  actor: string;
  action: string;
  resourceType: string;
  resourceId: string;
  tenantId?: string | null;
  before?: unknown;
  after?: unknown;
  reason: string;
  ticket?: string | null;
}

export async function insertAudit(tx: Tx, e: AuditEntry): Promise<void> {
  await tx.insert(auditLog).values({
    actor: e.actor,
    action: e.action,
    resourceType: e.resourceType,
    resourceId: e.resourceId,
    tenantId: e.tenantId ?? null,
    before: e.before ?? null,
    after: e.after ?? null,
    reason: e.reason,
    ticket: e.ticket ?? null,
  });
}

export type PolicyRow = typeof policies.$inferSelect;

export async function allPolicies(db: Tx): Promise<PolicyRow[]> {
  return db.select().from(policies);
}

export async function findPolicy(db: Tx, downstream: string): Promise<PolicyRow | undefined> {
  return (await db.select().from(policies).where(eq(policies.downstream, downstream)))[0];
}
