/**
 * Changing quotas and throttles: Postgres first (the durable truth, with the audit entry and a new
 * definitions version, in one transaction), then the Redis mirror the Lua scripts read, then a wake
 * so waiting jobs are re-evaluated under the new rules at once. If the mirror write fails, the sync
 * (src/governance/sync.ts) rebuilds the mirror from Postgres on its next round.
 */
import type { Logger } from 'pino';
import type { QuotaLimitsParsed } from '../contracts/quotas';
import type { Database } from '../db/client';
import {
  allPolicies,
  allQuotas,
  allThrottles,
  findPolicy,
  bumpVersion,
  currentVersion,
  findThrottleForUpdate,
  insertAudit,
  lockResource,
  quotaDef,
  quotasOfTenant,
  throttleDef,
  type PolicyRow,
  type QuotaRow,
  type ThrottleRow,
  type Tx,
} from '../db/quotas';
import { policies, quotas, throttles } from '../db/schema';
import type { Config } from '../config/file';
import { toPolicy } from '../config/policies';
import type { PolicyInput, PolicyParsed } from '../contracts/policies';
import type { Policy } from '../core/policy';
import { TollgateError } from '../errors';
import type { Governance } from '../redis/governance';
import { eq } from 'drizzle-orm';

export interface Operator {
  actor: string;
  reason: string;
  ticket?: string;
}

export interface QuotaScope {
  jobType?: string;
  downstream?: string;
}

/**
 * A check of the resource as it is now, run in the change's transaction under its lock before
 * anything is written; it throws to refuse the change (If-Match: src/api/etag.ts).
 */
export type Precondition<T> = ((current: T) => void) | undefined;

/** Runs in a creation's transaction: before anything is written, and with the row created (Idempotency-Key). */
export interface CreationHooks<R> {
  begin(tx: Tx): Promise<void>;
  created(tx: Tx, row: R): Promise<void>;
}

/** A downstream's policy in force: set at runtime (a row), else the config file's. */
export interface EffectivePolicy {
  downstream: string;
  policy: Policy;
  source: 'config' | 'runtime';
  updatedAt?: Date;
}

/** The scope's row among a tenant's quotas. */
const inScope = (rows: QuotaRow[], jobType: string | null, downstream: string | null) => rows.find((r) => r.jobType === jobType && r.downstream === downstream);

function limitColumns(l: QuotaLimitsParsed) {
  return {
    rate: l.rate ?? null,
    burst: l.burst ?? null,
    maxConcurrent: l.maxConcurrent ?? null,
    perHour: l.periods?.hour ?? null,
    perDay: l.periods?.day ?? null,
    perMonth: l.periods?.month ?? null,
    onPeriodExceeded: l.onPeriodExceeded,
    paused: l.paused,
  };
}

/** The limits of a row, in the contract's shape (for PATCH merges). */
export function limitsOf(r: QuotaRow): QuotaLimitsParsed {
  const d = quotaDef(r);
  return {
    ...(d.rate !== undefined ? { rate: d.rate } : {}),
    ...(d.burst !== undefined ? { burst: d.burst } : {}),
    ...(d.maxConcurrent !== undefined ? { maxConcurrent: d.maxConcurrent } : {}),
    ...(d.periods ? { periods: d.periods } : {}),
    onPeriodExceeded: d.onPeriodExceeded,
    paused: d.paused,
  };
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.code === '23505' || e?.cause?.code === '23505';
}

export class Definitions {
  constructor(
    private readonly database: Database,
    private readonly governance: Governance,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  // ---- policies ----

  /** The policy in force for each downstream: set at runtime, else the config file's. */
  async effectivePolicies(db: Tx = this.db): Promise<EffectivePolicy[]> {
    const rows = new Map((await allPolicies(db)).map((r) => [r.downstream, r]));
    return this.config.downstreams.map((d) => this.effective(d.name, rows.get(d.name)));
  }

  private effective(downstream: string, row: PolicyRow | undefined): EffectivePolicy {
    const ds = this.config.downstreams.find((d) => d.name === downstream)!;
    return row
      ? { downstream, policy: toPolicy(row.policy as PolicyInput, ds.capacity), source: 'runtime', updatedAt: row.updatedAt }
      : { downstream, policy: ds.policy, source: 'config' };
  }

  async putPolicy(downstream: string, input: PolicyParsed, op: Operator, precondition?: Precondition<EffectivePolicy>): Promise<EffectivePolicy> {
    const ds = this.config.downstreams.find((d) => d.name === downstream);
    if (!ds) throw new TollgateError('TG_ERR_NOT_FOUND', `no downstream ${downstream}`);
    const policy = toPolicy(input, ds.capacity);
    const reserves = Object.values(policy.tenants).reduce((sum, t) => sum + (t.reserve ?? 0), 0);
    if (policy.kind === 'reserved' && reserves > policy.capacity) {
      throw new TollgateError('TG_ERR_VALIDATION', `invalid body: body.tenants: reserves add up to ${reserves}, over the capacity of ${policy.capacity}`, [
        { field: 'body.tenants', message: `reserves add up to ${reserves}, over the capacity of ${policy.capacity}` },
      ]);
    }
    const result = await this.db.transaction(async (tx) => {
      await lockResource(tx, 'policy', downstream);
      const before = await findPolicy(tx, downstream);
      precondition?.(this.effective(downstream, before));
      const [row] = await tx
        .insert(policies)
        .values({ downstream, policy: input, updatedBy: op.actor })
        .onConflictDoUpdate({ target: policies.downstream, set: { policy: input, updatedBy: op.actor, updatedAt: new Date() } })
        .returning();
      const version = await bumpVersion(tx);
      await insertAudit(tx, {
        ...this.operatorFields(op),
        action: before ? 'policy.replace' : 'policy.create',
        resourceType: 'policy',
        resourceId: downstream,
        before: before?.policy ?? ds.policy,
        after: input,
      });
      return { version, row: row! };
    });
    await this.mirror(result.version, async () => {
      await this.governance.mirror.writePolicy(downstream, policy, 'runtime');
      await this.governance.repolicy(downstream);
    });
    return this.effective(downstream, result.row);
  }

  private get db() {
    return this.database.db;
  }

  // ---- quotas ----

  /**
   * Every change of a tenant's quotas runs under the tenant's lock and reads the rows after taking it,
   * so changes of different fields at once (PATCH and PATCH, pause and PATCH) all land, and a
   * precondition sees the tenant's quotas as they are. Each answers with them as they are after it.
   */
  async putQuota(
    tenantId: string,
    scope: QuotaScope,
    limits: QuotaLimitsParsed,
    op: Operator,
    precondition?: Precondition<QuotaRow[]>,
  ): Promise<{ row: QuotaRow; created: boolean; tenantRows: QuotaRow[] }> {
    const jobType = scope.jobType ?? null;
    const downstream = scope.downstream ?? null;
    const write = () =>
      this.db.transaction(async (tx) => {
        const current = await this.lockTenant(tx, tenantId, precondition);
        const before = inScope(current, jobType, downstream);
        const values = { ...limitColumns(limits), updatedAt: new Date() };
        const [row] = before
          ? await tx.update(quotas).set(values).where(eq(quotas.id, before.id)).returning()
          : await tx.insert(quotas).values({ tenantId, jobType, downstream, ...values }).returning();
        const version = await bumpVersion(tx);
        await this.audit(tx, op, before ? 'quota.replace' : 'quota.create', row!, before, row);
        return { row: row!, created: !before, version, tenantRows: await quotasOfTenant(tx, tenantId) };
      });
    let result;
    try {
      result = await write();
    } catch (err) {
      // Two creations of the same scope at once: the loser retries as an update.
      if (!isUniqueViolation(err)) throw err;
      result = await write();
    }
    await this.mirrorTenant(tenantId, result.version);
    return { row: result.row, created: result.created, tenantRows: result.tenantRows };
  }

  async patchQuota(
    tenantId: string,
    scope: QuotaScope,
    merge: (current: QuotaLimitsParsed) => QuotaLimitsParsed,
    op: Operator,
    precondition?: Precondition<QuotaRow[]>,
  ): Promise<{ row: QuotaRow; tenantRows: QuotaRow[] }> {
    const result = await this.db.transaction(async (tx) => {
      const current = await this.lockTenant(tx, tenantId);
      const before = inScope(current, scope.jobType ?? null, scope.downstream ?? null);
      if (!before) throw notFound(tenantId, scope);
      precondition?.(current);
      const [row] = await tx
        .update(quotas)
        .set({ ...limitColumns(merge(limitsOf(before))), updatedAt: new Date() })
        .where(eq(quotas.id, before.id))
        .returning();
      const version = await bumpVersion(tx);
      await this.audit(tx, op, 'quota.update', row!, before, row);
      return { row: row!, version, tenantRows: await quotasOfTenant(tx, tenantId) };
    });
    await this.mirrorTenant(tenantId, result.version);
    return { row: result.row, tenantRows: result.tenantRows };
  }

  async deleteQuota(tenantId: string, scope: QuotaScope, op: Operator, precondition?: Precondition<QuotaRow[]>): Promise<{ row: QuotaRow; tenantRows: QuotaRow[] }> {
    const result = await this.db.transaction(async (tx) => {
      const current = await this.lockTenant(tx, tenantId);
      const before = inScope(current, scope.jobType ?? null, scope.downstream ?? null);
      if (!before) throw notFound(tenantId, scope);
      precondition?.(current);
      await tx.delete(quotas).where(eq(quotas.id, before.id));
      const version = await bumpVersion(tx);
      await this.audit(tx, op, 'quota.delete', before, before, null);
      return { row: before, version, tenantRows: await quotasOfTenant(tx, tenantId) };
    });
    await this.mirrorTenant(tenantId, result.version);
    return { row: result.row, tenantRows: result.tenantRows };
  }

  /** Pauses or resumes every quota of a tenant; answers all of them. */
  async setPaused(tenantId: string, paused: boolean, op: Operator, precondition?: Precondition<QuotaRow[]>): Promise<QuotaRow[]> {
    const result = await this.db.transaction(async (tx) => {
      const before = await this.lockTenant(tx, tenantId);
      if (before.length === 0) {
        throw new TollgateError('TG_ERR_NOT_FOUND', `tenant ${tenantId} has no quota of its own to ${paused ? 'pause' : 'resume'}; create one, or pause it with a throttle`);
      }
      precondition?.(before);
      const rows = await tx.update(quotas).set({ paused, updatedAt: new Date() }).where(eq(quotas.tenantId, tenantId)).returning();
      const version = await bumpVersion(tx);
      for (const row of rows) {
        await this.audit(tx, op, paused ? 'quota.pause' : 'quota.resume', row, before.find((b) => b.id === row.id), row);
      }
      return { rows, version };
    });
    await this.mirrorTenant(tenantId, result.version);
    return result.rows.sort((a, b) => a.id - b.id);
  }

  /** Takes the tenant's quota lock, checks the precondition if given; answers the tenant's quotas. */
  private async lockTenant(tx: Tx, tenantId: string, precondition?: Precondition<QuotaRow[]>): Promise<QuotaRow[]> {
    await lockResource(tx, 'quotas', tenantId);
    const rows = await quotasOfTenant(tx, tenantId);
    precondition?.(rows);
    return rows;
  }

  // ---- throttles ----

  async createThrottle(values: Omit<typeof throttles.$inferInsert, 'id' | 'createdAt' | 'createdBy'>, op: Operator, hooks?: CreationHooks<ThrottleRow>): Promise<ThrottleRow> {
    const result = await this.db.transaction(async (tx) => {
      await hooks?.begin(tx);
      const [row] = await tx.insert(throttles).values({ ...values, createdBy: op.actor }).returning();
      const version = await bumpVersion(tx);
      await insertAudit(tx, { ...this.operatorFields(op), action: 'throttle.create', resourceType: 'throttle', resourceId: `t${row!.id}`, tenantId: row!.tenantId, after: row });
      await hooks?.created(tx, row!);
      return { row: row!, version };
    });
    await this.mirror(result.version, async () => {
      await this.governance.mirror.writeThrottle(throttleDef(result.row));
      await this.governance.wake(result.row.tenantId ?? undefined);
    });
    return result.row;
  }

  async deleteThrottle(id: number, op: Operator, precondition?: Precondition<ThrottleRow>): Promise<ThrottleRow> {
    const result = await this.db.transaction(async (tx) => {
      const row = await findThrottleForUpdate(tx, id);
      if (!row) throw new TollgateError('TG_ERR_NOT_FOUND', `no throttle t${id}`);
      precondition?.(row);
      await tx.delete(throttles).where(eq(throttles.id, id));
      const version = await bumpVersion(tx);
      await insertAudit(tx, { ...this.operatorFields(op), action: 'throttle.delete', resourceType: 'throttle', resourceId: `t${row.id}`, tenantId: row.tenantId, before: row });
      return { row, version };
    });
    await this.mirror(result.version, async () => {
      await this.governance.mirror.removeThrottle(throttleDef(result.row));
      await this.governance.wake(result.row.tenantId ?? undefined);
    });
    return result.row;
  }

  // ---- the Redis mirror ----

  private async mirrorTenant(tenantId: string, version: number): Promise<void> {
    await this.mirror(version, async (tx) => {
      const rows = await quotasOfTenant(tx, tenantId);
      await this.governance.mirror.writeTenantQuotas(tenantId, rows.map(quotaDef));
      await this.governance.wake(tenantId);
    });
  }

  /**
   * Mirrors a committed change into Redis under the mirror lock (see lockResource): a rebuild from an
   * older Postgres read cannot land after it and undo it.
   */
  private async mirror(version: number, write: (tx: Tx) => Promise<void>): Promise<void> {
    try {
      await this.db.transaction(async (tx) => {
        await lockResource(tx, 'mirror', '');
        await write(tx);
        await this.governance.mirror.advance(version - 1, version);
      });
      await this.governance.publishWake();
    } catch (err) {
      this.log.warn({ err: (err as Error).message, version }, 'change saved in Postgres but not yet mirrored to Redis; the sync will mirror it');
    }
  }

  /**
   * Rebuilds the Redis mirror from Postgres if it is not at Postgres's version, or absent (a fresh or
   * emptied Redis: writing it, even at version 0, tells the gates the definitions are in). Returns true
   * if rebuilt.
   */
  async repairMirror(): Promise<boolean> {
    if ((await this.mirrorState(this.db)).current) return false;
    // Under the mirror lock, with every read taken after it: a change that committed and mirrored
    // itself before is in these reads; one mirroring after waits for this rebuild, then writes over it.
    const rebuilt = await this.db.transaction(async (tx) => {
      await lockResource(tx, 'mirror', '');
      const { pgVersion, redisVersion, current } = await this.mirrorState(tx);
      if (current) return undefined; // another process rebuilt it meanwhile
      const quotaRows = await allQuotas(tx);
      const throttleRows = await allThrottles(tx);
      const effective = await this.effectivePolicies(tx);
      const byTenant = new Map<string, ReturnType<typeof quotaDef>[]>();
      for (const r of quotaRows) {
        const list = byTenant.get(r.tenantId) ?? [];
        list.push(quotaDef(r));
        byTenant.set(r.tenantId, list);
      }
      await this.governance.mirror.replaceDefinitions(byTenant, throttleRows.map(throttleDef), pgVersion);
      for (const { downstream, policy, source } of effective) {
        await this.governance.mirror.writePolicy(downstream, policy, source, { force: true });
        await this.governance.repolicy(downstream);
      }
      return { from: redisVersion, to: pgVersion, quotas: quotaRows.length, throttles: throttleRows.length };
    });
    if (!rebuilt) return false;
    await this.governance.wake();
    await this.governance.publishWake();
    this.log.info(rebuilt, 'quota and throttle definitions mirrored from Postgres into Redis');
    return true;
  }

  /** The definitions versions in Postgres and in Redis; current when Redis holds the mirror at Postgres's. */
  private async mirrorState(db: Tx): Promise<{ pgVersion: number; redisVersion: number; current: boolean }> {
    const [pgVersion, redisVersion, present] = await Promise.all([currentVersion(db), this.governance.mirror.version(), this.governance.mirror.exists()]);
    return { pgVersion, redisVersion, current: pgVersion === redisVersion && present };
  }

  private operatorFields(op: Operator) {
    return { actor: op.actor, reason: op.reason, ticket: op.ticket ?? null };
  }

  private async audit(tx: Tx, op: Operator, action: string, row: QuotaRow, before: QuotaRow | undefined | null, after: QuotaRow | undefined | null) {
    await insertAudit(tx, {
      ...this.operatorFields(op),
      action,
      resourceType: 'quota',
      resourceId: `q${row.id}`,
      tenantId: row.tenantId,
      before: before ?? null,
      after: after ?? null,
    });
  }
}

function notFound(tenantId: string, scope: QuotaScope): TollgateError {
  const parts = [scope.jobType !== undefined ? `jobType ${scope.jobType}` : '', scope.downstream !== undefined ? `downstream ${scope.downstream}` : '']
    .filter(Boolean)
    .join(', ');
  return new TollgateError('TG_ERR_NOT_FOUND', `tenant ${tenantId} has no quota${parts ? ` for ${parts}` : ' of its own (tenant-wide)'}`);
}
