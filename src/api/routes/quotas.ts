/**
 * `/api/v1/quotas`: tenant quotas (one per scope: tenant-wide, a job type, a downstream, or both),
 * their live usage, pause and resume. Reads need `read` (a tenant token sees its own tenant only);
 * changes need `admin` and an `X-Operator-Reason` header, and are audited. The tenant's quotas share
 * one ETag (GET /quotas/:tenantId): every change of them honours If-Match and answers the new one.
 */
import { z } from 'zod';
import { defaultQuota } from '../../config/quotas';
import { QuotaLimitsSchema, QuotaLimitsView, QuotaSchema, QuotaSelectorSchema, type QuotaLimitsParsed } from '../../contracts/quotas';
import { TENANT_ID } from '../../core/classify';
import { PERIODS } from '../../core/periods';
import { listQuotas, quotaDef, quotasOfTenant, type QuotaRow } from '../../db/quotas';
import { TollgateError } from '../../errors';
import { tenantUsage } from '../../governance/usage';
import { requireGlobalReader, type AuthContext } from '../auth';
import type { ApiContext } from '../context';
import { ETAG_HEADER, etagOf, IF_MATCH_HEADER, PRECONDITION_FAILED, preconditionOf, withETag } from '../etag';
import { operatorOf } from '../operator';
import { decodeCursor, page, PageQuery } from '../pagination';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

const TenantParams = z.strictObject({ tenantId: z.string().regex(TENANT_ID, 'must be 1-128 characters from [A-Za-z0-9._:@-]') });

const nullable = <T extends z.ZodType>(s: T) => s.nullable().optional();
/** PATCH: fields to change; null clears a limit. */
const QuotaPatchSchema = z.strictObject({
  rate: nullable(z.number().positive().max(1_000_000)),
  burst: nullable(z.number().int().min(1).max(1_000_000)),
  maxConcurrent: nullable(z.number().int().min(1).max(1_000_000)),
  periods: nullable(z.strictObject({ hour: nullable(z.number().int().min(0)), day: nullable(z.number().int().min(0)), month: nullable(z.number().int().min(0)) })),
  onPeriodExceeded: z.enum(['wait', 'reject']).optional(),
  paused: z.boolean().optional(),
});

const LimitsView = QuotaLimitsView;

const QuotaList = z.object({ items: z.array(QuotaSchema), nextCursor: z.string().optional() }).meta({ id: 'QuotaList' });
const TenantQuotas = z
  .object({ tenantId: z.string(), quotas: z.array(QuotaSchema), default: LimitsView.describe('Applies to the tenant\'s jobs no quota of its own matches') })
  .meta({ id: 'TenantQuotas' });
const PeriodUsage = z.object({ used: z.number(), limit: z.number(), resetsAt: z.string() });
const UsageSchema = z
  .object({
    tenantId: z.string(),
    quotas: z.array(
      z.object({
        quotaId: z.string(),
        scope: z.object({ jobType: z.string().optional(), downstream: z.string().optional() }),
        rateTokens: z.object({ available: z.number(), burst: z.number(), rate: z.number() }).optional(),
        inFlight: z.number(),
        maxConcurrent: z.number().optional(),
        periods: z.object({ hour: PeriodUsage.optional(), day: PeriodUsage.optional(), month: PeriodUsage.optional() }),
        paused: z.boolean(),
      }),
    ),
    waiting: z.object({ total: z.number(), byDownstream: z.record(z.string(), z.number()) }),
    allocation: z
      .record(
        z.string(),
        z.object({
          policy: z.string(),
          entitlement: z.number().nullable().optional().describe('Capacity units the policy entitles the tenant to now (null: unlimited); not shown to a tenant token (it depends on how many tenants have work)'),
          inFlight: z.number(),
          share: z.number().describe('inFlight / capacity'),
          borrowed: z.number().describe('Units beyond its reserve (reserved policy)'),
          waiting: z.number(),
          waitP50Ms: z.number().nullable(),
          waitP99Ms: z.number().nullable().describe('Over its last 200 jobs admitted from the waiting place'),
          admittedPerMinute: z.number(),
        }),
      )
      .describe('Per downstream'),
  })
  .meta({ id: 'QuotaUsage' });
const SummarySchema = z
  .object({
    tenantsWithQuotas: z.number(),
    quotas: z.number(),
    pausedQuotas: z.number(),
    default: LimitsView,
    waiting: z.object({ total: z.number(), byDownstream: z.record(z.string(), z.number()) }),
    mostWaiting: z.array(z.object({ tenantId: z.string(), waiting: z.number() })).describe('Up to 10 tenants with the most waiting jobs'),
  })
  .meta({ id: 'QuotaSummary' });

export function quotaView(r: QuotaRow): z.infer<typeof QuotaSchema> {
  const d = quotaDef(r);
  const { id, tenantId, jobType, downstream, rate, burst, maxConcurrent, periods, onPeriodExceeded, paused } = d;
  return {
    id,
    tenantId: tenantId!,
    ...(jobType !== undefined ? { jobType } : {}),
    ...(downstream !== undefined ? { downstream } : {}),
    ...(rate !== undefined ? { rate } : {}),
    ...(burst !== undefined ? { burst } : {}),
    ...(maxConcurrent !== undefined ? { maxConcurrent } : {}),
    ...(periods ? { periods } : {}),
    onPeriodExceeded,
    paused,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

/**
 * The tag of a tenant's quotas, all together: a change of any of them (or a new one) changes it, so
 * If-Match on one scope also refuses a change based on a stale view of the others.
 */
export function tenantQuotasTag(tenantId: string, rows: QuotaRow[]): string {
  return etagOf({ tenantId, quotas: rows.map(quotaView) });
}

/** A tenant token reads its own tenant only; anything else looks like a missing tenant. */
function requireTenantReader(auth: AuthContext, tenantId: string): void {
  if (auth.tenantId !== undefined && auth.tenantId !== tenantId) {
    throw new TollgateError('TG_ERR_NOT_FOUND', `no quota data for tenant ${tenantId}`);
  }
}

export function quotaRoutes(ctx: ApiContext): RouteDef[] {
  const downstreams = ctx.config.downstreams.map((d) => d.name);
  const Scope = QuotaSelectorSchema.superRefine((s, c) => {
    if (s.downstream !== undefined && !downstreams.includes(s.downstream)) {
      c.addIssue({ code: 'custom', path: ['downstream'], message: `"${s.downstream}" is not a declared downstream (declared: ${downstreams.join(', ')})` });
    }
  });
  const scopeDoc = 'Scope: no query = the tenant-wide quota; `jobType` and/or `downstream` select a narrower one';
  const db = () => ctx.database.db;
  const ifMatch = (req: Parameters<typeof preconditionOf>[0], tenantId: string) =>
    preconditionOf(req, `the quotas of tenant ${tenantId}`, (rows: QuotaRow[]) => tenantQuotasTag(tenantId, rows));
  const precondition412 = { 412: { description: PRECONDITION_FAILED, schema: ErrorBody } };

  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/quotas',
      summary: 'List quotas (filter by tenant, job type, paused), paginated',
      tag: 'quotas',
      access: 'read',
      postgres: true,
      query: z.strictObject({
        tenantId: z.string().regex(TENANT_ID).optional(),
        jobType: z.string().min(1).optional(),
        paused: z.enum(['true', 'false']).optional(),
        ...PageQuery,
      }),
      responses: { 200: { description: 'A page of quotas', schema: QuotaList } },
      handler: async ({ query, auth }) => {
        // A tenant token lists its own quotas only, whatever filter it asks for.
        const tenantId = auth.tenantId ?? query.tenantId;
        const rows = await listQuotas(db(), {
          ...(tenantId !== undefined ? { tenantId } : {}),
          ...(query.jobType !== undefined ? { jobType: query.jobType } : {}),
          ...(query.paused !== undefined ? { paused: query.paused === 'true' } : {}),
          ...(query.cursor !== undefined ? { afterId: decodeCursor(query.cursor) } : {}),
          limit: query.limit + 1,
        });
        return page(rows, query.limit, quotaView);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/quotas/summary',
      summary: 'Totals across tenants: quotas, paused, the default quota, waiting jobs and who waits most',
      tag: 'quotas',
      access: 'read',
      postgres: true,
      responses: { 200: { description: 'Summary', schema: SummarySchema } },
      handler: async ({ auth }) => {
        requireGlobalReader(auth);
        const rows = await listQuotas(db(), { limit: 1_000_000 });
        const waitingByTenant = new Map<string, number>();
        const byDownstream: Record<string, number> = {};
        let total = 0;
        for (const d of downstreams) {
          for (const [tenant, n] of Object.entries(await ctx.governance.waiting.byTenant(d))) {
            waitingByTenant.set(tenant, (waitingByTenant.get(tenant) ?? 0) + n);
            byDownstream[d] = (byDownstream[d] ?? 0) + n;
            total += n;
          }
        }
        const { id: _id, ...defaults } = defaultQuota(ctx.config);
        return {
          tenantsWithQuotas: new Set(rows.map((r) => r.tenantId)).size,
          quotas: rows.length,
          pausedQuotas: rows.filter((r) => r.paused).length,
          default: defaults,
          waiting: { total, byDownstream },
          mostWaiting: [...waitingByTenant]
            .sort((a, b) => b[1] - a[1])
            .slice(0, 10)
            .map(([tenantId, waiting]) => ({ tenantId, waiting })),
        };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/quotas/:tenantId',
      summary: "A tenant's quotas, and the default quota that covers the rest of its jobs",
      tag: 'quotas',
      access: 'read',
      postgres: true,
      params: TenantParams,
      responses: {
        200: { description: 'The tenant\'s quotas; the ETag covers them all', schema: TenantQuotas, headers: ETAG_HEADER },
        404: { description: 'Another tenant\'s (tenant tokens)', schema: ErrorBody },
      },
      handler: async ({ params, auth, reply }) => {
        requireTenantReader(auth, params.tenantId);
        const rows = await quotasOfTenant(db(), params.tenantId);
        const { id: _id, ...defaults } = defaultQuota(ctx.config);
        return withETag(reply, tenantQuotasTag(params.tenantId, rows), { tenantId: params.tenantId, quotas: rows.map(quotaView), default: defaults });
      },
    }),
    defineRoute({
      method: 'PUT',
      url: '/api/v1/quotas/:tenantId',
      summary: `Create or replace a quota of a tenant. ${scopeDoc}`,
      tag: 'quotas',
      access: 'admin',
      postgres: true,
      params: TenantParams,
      query: Scope,
      headers: IF_MATCH_HEADER,
      body: QuotaLimitsSchema,
      responses: {
        200: { description: 'Replaced; the ETag is the tenant\'s quotas\' new one', schema: QuotaSchema, headers: ETAG_HEADER },
        201: { description: 'Created', schema: QuotaSchema, headers: ETAG_HEADER },
        400: { description: 'Invalid body, scope or missing X-Operator-Reason; `details` names each field', schema: ErrorBody },
        ...precondition412,
      },
      handler: async ({ params, query, body, auth, req, reply }) => {
        const op = operatorOf(req, auth);
        const { row, created, tenantRows } = await ctx.definitions.putQuota(params.tenantId, query, body as QuotaLimitsParsed, op, ifMatch(req, params.tenantId));
        return reply.status(created ? 201 : 200).header('etag', tenantQuotasTag(params.tenantId, tenantRows)).send(quotaView(row));
      },
    }),
    defineRoute({
      method: 'PATCH',
      url: '/api/v1/quotas/:tenantId',
      summary: `Change some limits of a quota (null clears a limit). ${scopeDoc}`,
      tag: 'quotas',
      access: 'admin',
      postgres: true,
      params: TenantParams,
      query: Scope,
      headers: IF_MATCH_HEADER,
      body: QuotaPatchSchema,
      responses: {
        200: { description: 'Updated; the ETag is the tenant\'s quotas\' new one', schema: QuotaSchema, headers: ETAG_HEADER },
        404: { description: 'No such quota', schema: ErrorBody },
        ...precondition412,
      },
      handler: async ({ params, query, body, auth, req, reply }) => {
        const op = operatorOf(req, auth);
        const { row, tenantRows } = await ctx.definitions.patchQuota(
          params.tenantId,
          query,
          (current) => {
            const merged: Record<string, unknown> = { ...current };
            for (const [k, v] of Object.entries(body)) {
              if (k === 'periods' && v !== null && v !== undefined) {
                const periods: Record<string, unknown> = { ...(current.periods ?? {}) };
                for (const p of PERIODS) {
                  const pv = (v as Record<string, number | null | undefined>)[p];
                  if (pv === null) delete periods[p];
                  else if (pv !== undefined) periods[p] = pv;
                }
                merged.periods = periods;
              } else if (v === null) delete merged[k];
              else if (v !== undefined) merged[k] = v;
            }
            const parsed = QuotaLimitsSchema.safeParse(merged);
            if (!parsed.success) {
              const details = parsed.error.issues.map((i) => ({ field: ['body', ...i.path.map(String)].join('.'), message: i.message }));
              throw new TollgateError('TG_ERR_VALIDATION', `invalid body: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`, details);
            }
            return parsed.data;
          },
          op,
          ifMatch(req, params.tenantId),
        );
        return withETag(reply, tenantQuotasTag(params.tenantId, tenantRows), quotaView(row));
      },
    }),
    defineRoute({
      method: 'DELETE',
      url: '/api/v1/quotas/:tenantId',
      summary: `Delete a quota of a tenant (its jobs fall back to the next most specific quota). ${scopeDoc}`,
      tag: 'quotas',
      access: 'admin',
      postgres: true,
      params: TenantParams,
      query: Scope,
      headers: IF_MATCH_HEADER,
      responses: {
        200: { description: 'The deleted quota; the ETag is the tenant\'s quotas\' new one', schema: z.object({ deleted: QuotaSchema }), headers: ETAG_HEADER },
        404: { description: 'No such quota', schema: ErrorBody },
        ...precondition412,
      },
      handler: async ({ params, query, auth, req, reply }) => {
        const op = operatorOf(req, auth);
        const { row, tenantRows } = await ctx.definitions.deleteQuota(params.tenantId, query, op, ifMatch(req, params.tenantId));
        return withETag(reply, tenantQuotasTag(params.tenantId, tenantRows), { deleted: quotaView(row) });
      },
    }),
    ...(['pause', 'resume'] as const).map((action) =>
      defineRoute({
        method: 'POST',
        url: `/api/v1/quotas/:tenantId/${action}`,
        summary: action === 'pause' ? "Pause every quota of a tenant: its jobs wait, none is dropped" : "Resume every quota of a tenant: waiting jobs are re-evaluated at once",
        tag: 'quotas',
        access: 'admin',
        params: TenantParams,
        headers: IF_MATCH_HEADER,
        responses: {
          200: { description: 'The tenant\'s quotas, and their new ETag', schema: z.object({ tenantId: z.string(), quotas: z.array(QuotaSchema) }), headers: ETAG_HEADER },
          404: { description: 'The tenant has no quota', schema: ErrorBody },
          ...precondition412,
        },
        handler: async ({ params, auth, req, reply }) => {
          const op = operatorOf(req, auth);
          const rows = await ctx.definitions.setPaused(params.tenantId, action === 'pause', op, ifMatch(req, params.tenantId));
          return withETag(reply, tenantQuotasTag(params.tenantId, rows), { tenantId: params.tenantId, quotas: rows.map(quotaView) });
        },
      }),
    ),
    defineRoute({
      method: 'GET',
      url: '/api/v1/quotas/:tenantId/usage',
      summary: 'Live usage of each quota of a tenant: rate tokens left, in flight, period used / limit, jobs waiting',
      tag: 'quotas',
      access: 'read',
      postgres: true,
      params: TenantParams,
      responses: { 200: { description: 'Usage', schema: UsageSchema } },
      handler: async ({ params, auth }) => {
        requireTenantReader(auth, params.tenantId);
        const rows = await quotasOfTenant(db(), params.tenantId);
        const policies = await ctx.definitions.effectivePolicies();
        const usage = await tenantUsage(ctx.redis, ctx.governance, params.tenantId, rows.map(quotaDef), defaultQuota(ctx.config), policies);
        // A tenant token does not learn how many other tenants have work.
        if (auth.tenantId !== undefined) for (const a of Object.values(usage.allocation)) delete (a as { entitlement?: number | null }).entitlement;
        return usage;
      },
    }),
  ];
}
