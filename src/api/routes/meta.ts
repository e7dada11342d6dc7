/** `/metrics` (Prometheus) and `/api/v1/openapi.json`. */
import { z } from 'zod';
import { requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { defineRoute, type RouteDef } from '../route';

export function metaRoutes(ctx: ApiContext, openapi: () => Record<string, unknown>): RouteDef[] {
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
