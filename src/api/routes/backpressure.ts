/**
 * `GET /api/v1/backpressure`: per downstream and per tenant, `ok` / `slow-down` / `shed` with a
 * suggested retry-after. A tenant token sees the downstreams' levels without their waiting counts
 * (other tenants' work), and its own tenant only.
 */
import { z } from 'zod';
import { TENANT_ID } from '../../core/classify';
import { downstreamPressure, tenantPressures } from '../../governance/backpressure';
import { TollgateError } from '../../errors';
import type { ApiContext } from '../context';
import { defineRoute, type RouteDef } from '../route';

const Level = z.enum(['ok', 'slow-down', 'shed']);
const BackpressureSchema = z
  .object({
    downstreams: z.array(
      z.object({
        downstream: z.string(),
        level: Level,
        waiting: z.number().optional().describe("Jobs waiting on the downstream, all tenants; not shown to a tenant token (its own are in `tenants`)"),
        shedding: z.boolean(),
        slowDownAt: z.number().describe('Waiting jobs from which producers should slow down'),
        shedAt: z.number().optional().describe('Waiting jobs above which the gate sheds'),
        retryAfterMs: z.number().optional(),
      }),
    ),
    tenants: z.array(
      z.object({
        tenantId: z.string(),
        downstream: z.string(),
        level: Level,
        waiting: z.number(),
        reason: z.string().optional(),
        retryAfterMs: z.number().optional(),
      }),
    ),
  })
  .meta({ id: 'Backpressure' });

/** Tenants reported per downstream without a tenantId: those with the most waiting. */
const MAX_TENANTS = 1000;

function mostWaiting(byTenant: Record<string, number>, n: number): string[] {
  return Object.entries(byTenant)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, n)
    .map(([t]) => t);
}

export function backpressureRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/backpressure',
      summary: 'Backpressure per downstream and tenant (ok, slow-down, shed) with a suggested retry-after',
      tag: 'backpressure',
      access: 'read',
      query: z.strictObject({
        tenantId: z.string().regex(TENANT_ID).optional().describe('A tenant to report on (default: the 1000 tenants with the most waiting work, per downstream)'),
        jobName: z.string().min(1).optional().describe("With tenantId: also consider that job type's holds"),
      }),
      responses: { 200: { description: 'Levels', schema: BackpressureSchema } },
      handler: async ({ query, auth }) => {
        if (auth.tenantId !== undefined && query.tenantId !== undefined && query.tenantId !== auth.tenantId) {
          throw new TollgateError('TG_ERR_NOT_FOUND', `no backpressure data for tenant ${query.tenantId}`);
        }
        const tenantFilter = auth.tenantId ?? query.tenantId;
        const all = await Promise.all(ctx.config.downstreams.map((d) => downstreamPressure(ctx.governance, d)));
        const downstreams = auth.tenantId === undefined ? all : all.map(({ waiting: _othersToo, ...d }) => d);
        // Per downstream, one read of its state for all the tenants reported (not one per tenant).
        const perDownstream = await Promise.all(
          ctx.config.downstreams.map(async (d) => {
            const ids = tenantFilter !== undefined ? [tenantFilter] : mostWaiting(await ctx.governance.waiting.byTenant(d.name), MAX_TENANTS);
            return tenantPressures(ctx.governance, ctx.config, d, ids, query.jobName);
          }),
        );
        return { downstreams, tenants: perDownstream.flat() };
      },
    }),
  ];
}
