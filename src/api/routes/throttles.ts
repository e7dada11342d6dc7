/**
 * `/api/v1/throttles`: pause or slow a tenant, a job type, or a tenant's job type, until a time or until
 * removed. Paused jobs wait; none is dropped. Changes need `admin` and `X-Operator-Reason`. A throttle
 * has an ETag (DELETE honours If-Match); POST honours Idempotency-Key.
 */
import { z } from 'zod';
import { ThrottleInputSchema, ThrottleSchema } from '../../contracts/quotas';
import { TENANT_ID } from '../../core/classify';
import { findThrottle, listThrottles, throttleDef, type ThrottleRow } from '../../db/quotas';
import { TollgateError } from '../../errors';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { ETAG_HEADER, etagOf, IF_MATCH_HEADER, PRECONDITION_FAILED, preconditionOf, withETag } from '../etag';
import { IDEMPOTENCY_KEY_HEADER, idempotentCreate } from '../idempotency';
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

/** The tag of a stored throttle (`active` follows from `until` and the clock, so it is left out). */
export function throttleTag(r: ThrottleRow): string {
  return etagOf({ ...throttleDef(r), createdAt: r.createdAt.toISOString(), createdBy: r.createdBy });
}

/** `t<n>`; n within Postgres's integer ids (a larger one is a 400, not a failed query). */
const ThrottleParams = z.strictObject({
  id: z
    .string()
    .regex(/^t\d{1,10}$/, 'must be a throttle id like t12')
    .refine((id) => Number(id.slice(1)) <= 2_147_483_647, 'is past the largest throttle id (t2147483647)'),
});

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
      headers: IDEMPOTENCY_KEY_HEADER,
      body: ThrottleInputSchema,
      responses: {
        201: { description: 'Created (or, for a retry with the same Idempotency-Key, the first answer again)', schema: ThrottleSchema, headers: ETAG_HEADER },
        400: { description: 'Invalid body or missing X-Operator-Reason', schema: ErrorBody },
        422: { description: 'The Idempotency-Key was used with another body', schema: ErrorBody },
      },
      handler: async ({ body, auth, req, reply }) => {
        const op = operatorOf(req, auth);
        const until = body.until !== undefined ? new Date(body.until) : null;
        if (until !== null && until.getTime() <= Date.now()) {
          throw new TollgateError('TG_ERR_VALIDATION', 'invalid body: body.until: must be in the future', [{ field: 'body.until', message: 'must be in the future' }]);
        }
        const values = { tenantId: body.tenantId ?? null, jobType: body.jobType ?? null, action: body.action, rate: body.rate ?? null, burst: body.burst ?? null, until };
        return idempotentCreate<ThrottleRow>(
          ctx,
          req,
          reply,
          { principal: auth.identity, endpoint: 'POST /api/v1/throttles', body },
          (hooks) => ctx.definitions.createThrottle(values, op, hooks),
          (row) => ({ status: 201, body: throttleView(row), headers: { etag: throttleTag(row) } }),
        );
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/throttles/:id',
      summary: 'One throttle, with its ETag',
      tag: 'throttles',
      access: 'read',
      postgres: true,
      params: ThrottleParams,
      responses: { 200: { description: 'The throttle', schema: ThrottleSchema, headers: ETAG_HEADER }, 404: { description: 'No such throttle', schema: ErrorBody } },
      handler: async ({ params, auth, reply }) => {
        requireGlobalReader(auth);
        const row = await findThrottle(ctx.database.db, Number(params.id.slice(1)));
        if (!row) throw new TollgateError('TG_ERR_NOT_FOUND', `no throttle ${params.id}`);
        return withETag(reply, throttleTag(row), throttleView(row));
      },
    }),
    defineRoute({
      method: 'DELETE',
      url: '/api/v1/throttles/:id',
      summary: 'Remove a throttle: the jobs it held are re-evaluated at once',
      tag: 'throttles',
      access: 'admin',
      postgres: true,
      params: ThrottleParams,
      headers: IF_MATCH_HEADER,
      responses: {
        200: { description: 'The removed throttle', schema: z.object({ deleted: ThrottleSchema }) },
        404: { description: 'No such throttle', schema: ErrorBody },
        412: { description: PRECONDITION_FAILED, schema: ErrorBody },
      },
      handler: async ({ params, auth, req }) => {
        const op = operatorOf(req, auth);
        const row = await ctx.definitions.deleteThrottle(Number(params.id.slice(1)), op, preconditionOf(req, `throttle ${params.id}`, throttleTag));
        return { deleted: throttleView(row) };
      },
    }),
  ];
}
