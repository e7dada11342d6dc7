/** `/metrics` (Prometheus), `/api/v1/whoami` and `/api/v1/openapi.json`. */
import { z } from 'zod';
import { authorize, requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { defineRoute, type RouteDef } from '../route';

/** `/metrics` alone: also what METRICS_PORT serves beside health (src/api/server.ts, buildHealthApi). */
export function metricsRoutes(ctx: Pick<ApiContext, 'metrics'>): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/metrics',
      summary: 'Prometheus metrics: decisions, outcomes, queue depths, promotion latency, observer events',
      tag: 'meta',
      access: 'read',
      responses: { 200: { description: 'Prometheus text format', schema: z.string(), contentType: 'text/plain' } },
      handler: async ({ auth, reply }) => {
        requireGlobalReader(auth);
        const body = await ctx.metrics.registry.metrics();
        return reply.header('content-type', ctx.metrics.registry.contentType).send(body);
      },
    }),
  ];
}

export function metaRoutes(ctx: ApiContext, openapi: () => Record<string, unknown>): RouteDef[] {
  return [
    ...metricsRoutes(ctx),
    defineRoute({
      method: 'GET',
      url: '/api/v1/whoami',
      summary: "The caller's token: whether it is signed in, its name, whether it may change things (admin), the tenant it is limited to",
      tag: 'meta',
      // Answers without a token too (signedIn false), so a page can ask before it has one.
      access: 'public',
      responses: {
        200: {
          description: 'The token',
          schema: z
            .object({
              signedIn: z.boolean().describe('False without a known token while the API requires one'),
              tokenRequired: z.boolean(),
              identity: z.string(),
              admin: z.boolean(),
              tenantId: z.string().optional(),
              message: z.string().optional(),
            })
            .meta({ id: 'WhoAmI' }),
        },
      },
      handler: async ({ req }) => {
        const tokenRequired = ctx.tokens.length > 0;
        try {
          const auth = authorize(req.headers.authorization, 'read', ctx.tokens);
          return { signedIn: true, tokenRequired, identity: auth.identity, admin: auth.admin === true, ...(auth.tenantId !== undefined ? { tenantId: auth.tenantId } : {}) };
        } catch (err) {
          return { signedIn: false, tokenRequired, identity: 'anonymous', admin: false, message: (err as Error).message };
        }
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/api/v1/openapi.json',
      summary: 'This API as an OpenAPI 3.1 document, generated from the same zod schemas that validate requests',
      tag: 'meta',
      access: 'public',
      responses: { 200: { description: 'OpenAPI document' } },
      handler: async () => openapi(),
    }),
  ];
}
