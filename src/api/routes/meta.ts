/** `/metrics` and `/metrics/cluster` (Prometheus), `/api/v1/whoami` and `/api/v1/openapi.json`. */
import { z } from 'zod';
import { authorize, requireGlobalReader } from '../auth';
import type { ApiContext } from '../context';
import { defineRoute, type RouteDef } from '../route';

/**
 * `/metrics` alone: also what METRICS_PORT serves beside health (src/api/server.ts, buildHealthApi).
 * `cluster`: whether it carries the cluster-wide series too (the API with metrics.clusterSeries on).
 */
export function metricsRoutes(ctx: Pick<ApiContext, 'metrics'>, opts: { cluster?: boolean } = {}): RouteDef[] {
  const { registry, clusterRegistry } = ctx.metrics;
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
        const [own, cluster] = await Promise.all([registry.metrics(), opts.cluster ? clusterRegistry.metrics() : '']);
        return reply.header('content-type', registry.contentType).send(own + cluster);
      },
    }),
  ];
}

/** `/metrics/cluster`: the cluster-wide series alone, on every API process (for one scrape through a load balancer). */
function clusterMetricsRoute(ctx: Pick<ApiContext, 'metrics'>): RouteDef {
  return defineRoute({
    method: 'GET',
    url: '/metrics/cluster',
    summary: 'Prometheus metrics read from Redis, the same from every API process: queue depths, waiting and in flight, decisions, outcomes, fairness, breakers',
    tag: 'meta',
    access: 'read',
    responses: { 200: { description: 'Prometheus text format', schema: z.string(), contentType: 'text/plain' } },
    handler: async ({ auth, reply }) => {
      requireGlobalReader(auth);
      return reply.header('content-type', ctx.metrics.clusterRegistry.contentType).send(await ctx.metrics.clusterRegistry.metrics());
    },
  });
}

export function metaRoutes(ctx: ApiContext, openapi: () => Record<string, unknown>): RouteDef[] {
  return [
    ...metricsRoutes(ctx, { cluster: ctx.config.metrics.clusterSeries }),
    clusterMetricsRoute(ctx),
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
