/**
 * Tenants at a glance, for thousands of them: every tenant that has a quota, waits, runs or was admitted
 * in the last 15 minutes, with its waiting and in-flight jobs per downstream, its recent admissions,
 * how long it has been waiting for its turn, its quotas and throttles. Sorted, filtered and paged here
 * (the dashboard shows one page); a tenant token sees its own tenant only.
 */
import { and, count, gt, isNull, or, sql } from 'drizzle-orm';
import { z } from 'zod';
import { reserveOf, weightOf } from '../../core/policy';
import { quotas, throttles } from '../../db/schema';
import type { ApiContext } from '../context';
import { decodeCursor, encodeCursor, PageQuery } from '../pagination';
import { defineRoute, type RouteDef } from '../route';

const SORTS = ['busiest', 'starving', 'waiting', 'tenant'] as const;

const TenantsQuery = z.strictObject({
  sort: z.enum(SORTS).default('busiest').describe('busiest: in flight plus admitted in the last 15 minutes; starving: waiting longest for a turn; waiting: most jobs waiting; tenant: by id'),
  q: z.string().max(128).optional().describe('Only tenants whose id contains this'),
  ...PageQuery,
});

const PerDownstream = z.record(z.string(), z.number());
const TenantRow = z
  .object({
    tenantId: z.string(),
    waiting: z.object({ total: z.number(), byDownstream: PerDownstream }),
    inFlight: z.object({ total: z.number(), byDownstream: PerDownstream }),
    admittedLast15m: z.number().describe('Cost units admitted in the last 15 minutes, all downstreams'),
    waitingForTurnMs: z.number().optional().describe('Since when the tenant has had work waiting without being served (the longest over its downstreams)'),
    quotas: z.number().describe('Quotas of its own (the default quota covers the rest)'),
    paused: z.boolean().describe('Every quota of its own is paused'),
    throttles: z.number().describe('Throttles in force naming it'),
    share: z
      .record(z.string(), z.object({ share: z.number(), entitlement: z.number().optional() }))
      .describe(
        "Per downstream where it has work: its share of the capacity in use now, and its entitlement (its policy weight over the weights of the tenants with work there; a reserve counts at least its reserve). A tenant token gets no entitlement: it would tell how many tenants have work",
      ),
  })
  .meta({ id: 'TenantRow' });
const TenantList = z.object({ total: z.number(), items: z.array(TenantRow), nextCursor: z.string().optional() }).meta({ id: 'TenantList' });

type Row = z.infer<typeof TenantRow>;

export function tenantRoutes(ctx: ApiContext): RouteDef[] {
  const downstreams = ctx.config.downstreams.map((d) => d.name);
  const db = () => ctx.database!.db;
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/tenants',
      summary: 'Tenants: waiting and in flight per downstream, recent admissions, time waiting for a turn, quotas and throttles; sorted, filtered, paged',
      tag: 'tenants',
      access: 'read',
      postgres: true,
      query: TenantsQuery,
      responses: { 200: { description: 'A page of tenants', schema: TenantList } },
      handler: async ({ query, auth }) => {
        const now = Date.now();
        const [perDs, quotaRows, throttleRows] = await Promise.all([
          Promise.all(
            downstreams.map(async (d) => {
              const [waiting, inFlight, queued, minutes] = await Promise.all([
                ctx.governance.waiting.byTenant(d),
                ctx.governance.reads.inFlightByTenant(d),
                ctx.governance.waiting.queuedTenants(d),
                ctx.governance.reads.admissionsByMinute(d, 15, now),
              ]);
              return { d, waiting, inFlight, queued, minutes };
            }),
          ),
          db()
            .select({ tenantId: quotas.tenantId, n: count(), paused: sql<boolean>`bool_and(${quotas.paused})` })
            .from(quotas)
            .groupBy(quotas.tenantId),
          db()
            .select({ tenantId: throttles.tenantId, n: count() })
            .from(throttles)
            .where(and(sql`${throttles.tenantId} is not null`, or(isNull(throttles.until), gt(throttles.until, new Date(now)))))
            .groupBy(throttles.tenantId),
        ]);
        const rows = new Map<string, Row>();
        const rowOf = (tenantId: string): Row => {
          let r = rows.get(tenantId);
          if (!r) {
            r = { tenantId, waiting: { total: 0, byDownstream: {} }, inFlight: { total: 0, byDownstream: {} }, admittedLast15m: 0, quotas: 0, paused: false, throttles: 0, share: {} };
            rows.set(tenantId, r);
          }
          return r;
        };
        for (const q of quotaRows) Object.assign(rowOf(q.tenantId), { quotas: Number(q.n), paused: Boolean(q.paused) });
        for (const t of throttleRows) if (t.tenantId) rowOf(t.tenantId).throttles = Number(t.n);
        for (const { d, waiting, inFlight, queued, minutes } of perDs) {
          for (const [t, n] of Object.entries(waiting)) {
            if (n <= 0) continue;
            const r = rowOf(t);
            r.waiting.byDownstream[d] = n;
            r.waiting.total += n;
          }
          for (const [t, n] of Object.entries(inFlight)) {
            if (n <= 0) continue;
            const r = rowOf(t);
            r.inFlight.byDownstream[d] = n;
            r.inFlight.total += n;
          }
          for (const m of minutes) for (const [t, n] of Object.entries(m.byTenant)) rowOf(t).admittedLast15m += n;
          for (const { tenantId, since } of queued) {
            const r = rows.get(tenantId);
            if (!r || !r.waiting.byDownstream[d]) continue;
            r.waitingForTurnMs = Math.max(r.waitingForTurnMs ?? 0, Math.max(0, now - since));
          }
        }
        // Share against entitlement, per downstream, among the tenants with work there.
        const policies = await Promise.all(downstreams.map((d) => ctx.governance.mirror.readPolicy(d)));
        downstreams.forEach((d, i) => {
          const policy = policies[i];
          const capacity = ctx.config.downstreams.find((x) => x.name === d)!.capacity;
          const active = [...rows.values()].filter((r) => (r.waiting.byDownstream[d] ?? 0) + (r.inFlight.byDownstream[d] ?? 0) > 0);
          if (active.length === 0) return;
          const weight = (t: string) => (policy ? weightOf(policy, t) : 1);
          const total = active.reduce((n, r) => n + weight(r.tenantId), 0);
          const cap = policy?.capacity ?? capacity;
          for (const r of active) {
            const byWeight = weight(r.tenantId) / total;
            const reserve = policy ? reserveOf(policy, r.tenantId) / Math.max(1, cap) : 0;
            r.share[d] = {
              share: Math.round(((r.inFlight.byDownstream[d] ?? 0) / Math.max(1, cap)) * 1000) / 1000,
              entitlement: Math.round(Math.max(byWeight, reserve) * 1000) / 1000,
            };
          }
        });
        let list = [...rows.values()];
        if (auth.tenantId !== undefined) {
          list = list.filter((r) => r.tenantId === auth.tenantId);
          for (const r of list) for (const s of Object.values(r.share)) delete s.entitlement;
        }
        if (query.q) list = list.filter((r) => r.tenantId.includes(query.q!));
        const byId = (a: Row, b: Row) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0);
        const key: Record<(typeof SORTS)[number], (a: Row, b: Row) => number> = {
          busiest: (a, b) => b.inFlight.total + b.admittedLast15m - (a.inFlight.total + a.admittedLast15m) || byId(a, b),
          starving: (a, b) => (b.waitingForTurnMs ?? -1) - (a.waitingForTurnMs ?? -1) || b.waiting.total - a.waiting.total || byId(a, b),
          waiting: (a, b) => b.waiting.total - a.waiting.total || byId(a, b),
          tenant: byId,
        };
        list.sort(key[query.sort]);
        const offset = decodeCursor(query.cursor) ?? 0;
        const items = list.slice(offset, offset + query.limit);
        return {
          total: list.length,
          items,
          ...(offset + query.limit < list.length ? { nextCursor: encodeCursor(offset + query.limit) } : {}),
        };
      },
    }),
  ];
}
