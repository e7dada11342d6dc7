/** Liveness and readiness. Both are public: orchestrators probe them without tokens. */
import { z } from 'zod';
import type { RouteDef } from '../route';
import { defineRoute } from '../route';
import { HealthSchema, ReadinessSchema } from '../schemas';
import type { ApiContext } from '../context';
import { RETRY_AFTER_SECONDS } from '../errors';

export function healthRoutes(ctx: ApiContext): RouteDef[] {
  return [
    defineRoute({
      method: 'GET',
      url: '/healthz',
      summary: 'Liveness: the process is up (does not check Redis or Postgres)',
      tag: 'health',
      access: 'public',
      responses: { 200: { description: 'Alive', schema: HealthSchema } },
      handler: async () => ({ status: 'ok' }),
    }),
    defineRoute({
      method: 'GET',
      url: '/readyz',
      summary: "Readiness of this process's roles: a gate needs Redis; an observer or the API also Postgres with its migrations applied and governance state restored",
      tag: 'health',
      access: 'public',
      responses: {
        200: { description: 'Ready', schema: ReadinessSchema },
        503: {
          description: 'Not ready; `checks` says which dependency is missing',
          schema: ReadinessSchema,
          headers: { 'Retry-After': z.string().describe('Seconds before probing again') },
        },
      },
      handler: async ({ reply }) => {
        const checks = await ctx.readiness();
        const ready = Object.values(checks).every((c) => c.ok);
        if (!ready) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
        return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not-ready', checks });
      },
    }),
  ];
}
