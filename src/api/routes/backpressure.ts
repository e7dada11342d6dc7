/**
 * `GET /api/v1/backpressure`: per downstream and per tenant, `ok` / `slow-down` / `shed` with a
 * suggested retry-after. A tenant token sees the downstreams' levels without their waiting counts
 * (other tenants' work), and its own tenant only.
 */
import { z } from 'zod';
import { TENANT_ID } from '../../core/classify';
import { downstreamPressure, tenantPressure } from '../../governance/backpressure';
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

export function backpressureRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/backpressure',
      summary: 'Backpressure per downstream and tenant (ok, slow-down, shed) with a suggested retry-after',
      tag: 'backpressure',
      access: 'read',
      query: z.strictObject({
        tenantId: z.string().regex(TENANT_ID).optional().describe('A tenant to report on (default: every tenant with waiting work)'),
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
        const tenants = [];
        for (const d of ctx.config.downstreams) {
          const ids = tenantFilter !== undefined ? [tenantFilter] : Object.keys(await ctx.governance.waiting.byTenant(d.name)).slice(0, 1000);
          for (const t of ids) tenants.push(await tenantPressure(ctx.governance, ctx.config, d, t, query.jobName));
        }
        return { downstreams, tenants };
      },
    }),
  ];
}
