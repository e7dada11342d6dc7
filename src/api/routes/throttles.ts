/**
 * `/api/v1/throttles`: pause or slow a tenant, a job type, or a tenant's job type, until a time or until
 * removed. Paused jobs wait; none is dropped. Changes need `admin` and `X-Operator-Reason`.
 */
import { z } from 'zod';
import { ThrottleInputSchema, ThrottleSchema } from '../../contracts/quotas';
import { TENANT_ID } from '../../core/classify';
import { listThrottles, throttleDef, type ThrottleRow } from '../../db/quotas';
import { TollgateError } from '../../errors';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { operatorOf } from '../operator';
import { decodeCursor, page, PageQuery } from '../pagination';
import { defineRoute, ErrorBody, type RouteDef } from '../route';

export function throttleView(r: ThrottleRow, now = Date.now()): z.infer<typeof ThrottleSchema> {
  const { until, ...def } = throttleDef(r);
  return {
    ...def,
    ...(until !== undefined ? { until: new Date(until).toISOString() } : {}),
    active: until === undefined || until > now,
    createdAt: r.createdAt.toISOString(),
    createdBy: r.createdBy,
  };
}

export function throttleRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/api/v1/throttles',
      summary: 'List throttles (filter by tenant, active), paginated',
      tag: 'throttles',
      access: 'read',
      postgres: true,
      query: z.strictObject({ tenantId: z.string().regex(TENANT_ID).optional(), active: z.enum(['true', 'false']).optional(), ...PageQuery }),
      responses: { 200: { description: 'A page of throttles', schema: z.object({ items: z.array(ThrottleSchema), nextCursor: z.string().optional() }) } },
      handler: async ({ query, auth }) => {
        requireGlobalReader(auth);
        const now = Date.now();
        const rows = await listThrottles(ctx.database.db, {
          ...(query.tenantId !== undefined ? { tenantId: query.tenantId } : {}),
          ...(query.cursor !== undefined ? { afterId: decodeCursor(query.cursor) } : {}),
          limit: query.active === undefined ? query.limit + 1 : 100_000,
        });
        const filtered = query.active === undefined ? rows : rows.filter((r) => (r.until === null || r.until.getTime() > now) === (query.active === 'true'));
        return page(filtered, query.limit, (r) => throttleView(r, now));
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/api/v1/throttles',
      summary: 'Pause or slow a tenant, a job type, or both, until a time or until removed',
      tag: 'throttles',
      access: 'admin',
      postgres: true,
      body: ThrottleInputSchema,
      responses: { 201: { description: 'Created', schema: ThrottleSchema }, 400: { description: 'Invalid body or missing X-Operator-Reason', schema: ErrorBody } },
      handler: async ({ body, auth, req, reply }) => {
        const op = operatorOf(req, auth);
        const until = body.until !== undefined ? new Date(body.until) : null;
        if (until !== null && until.getTime() <= Date.now()) {
          throw new TollgateError('TG_ERR_VALIDATION', 'invalid body: body.until: must be in the future', [{ field: 'body.until', message: 'must be in the future' }]);
        }
        const row = await ctx.definitions.createThrottle(
          {
            tenantId: body.tenantId ?? null,
            jobType: body.jobType ?? null,
            action: body.action,
            rate: body.rate ?? null,
            burst: body.burst ?? null,
            until,
          },
          op,
        );
        return reply.status(201).send(throttleView(row));
      },
    }),
    defineRoute({
      method: 'DELETE',
      url: '/api/v1/throttles/:id',
      summary: 'Remove a throttle: the jobs it held are re-evaluated at once',
      tag: 'throttles',
      access: 'admin',
      postgres: true,
      params: z.strictObject({ id: z.string().regex(/^t\d{1,12}$/, 'must be a throttle id like t12') }),
      responses: { 200: { description: 'The removed throttle', schema: z.object({ deleted: ThrottleSchema }) }, 404: { description: 'No such throttle', schema: ErrorBody } },
      handler: async ({ params, auth, req }) => {
        const row = await ctx.definitions.deleteThrottle(Number(params.id.slice(1)), operatorOf(req, auth));
        return { deleted: throttleView(row) };
      },
    }),
  ];
}
