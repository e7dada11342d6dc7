/** Builds the fastify app: routes, auth, errors, metrics. Listening is the caller's business. */
import Fastify, { type FastifyInstance } from 'fastify';
import { registerClusterMetrics } from './cluster-metrics';
import type { ApiContext } from './context';
import { installErrorHandling } from './errors';
import { buildOpenApi } from './openapi';
import { registerRoutes, type RouteDef } from './route';
import { dashboardRoutes } from './routes/dashboard';
import { healthRoutes } from './routes/health';
import { jobRoutes } from './routes/jobs';
import { metaRoutes } from './routes/meta';
import { queueRoutes } from './routes/queues';
import { quotaRoutes } from './routes/quotas';
import { tenantRoutes } from './routes/tenants';
import { deadLetterRoutes } from './routes/dead-letter';
import { flowRoutes } from './routes/flow';
import { throttleRoutes } from './routes/throttles';
import { policyRoutes } from './routes/policies';
import { backpressureRoutes } from './routes/backpressure';
import { breakerRoutes } from './routes/breakers';
import { alertRoutes } from './routes/alerts';

const VERSION: string = require('../../package.json').version;

export function apiRoutes(ctx: ApiContext): RouteDef[] {
  const routes: RouteDef[] = [];
  let doc: Record<string, unknown> | undefined;
  // Built on first request, from the same declarations that serve the routes.
  const openapi = () => (doc ??= buildOpenApi(routes, VERSION));
  routes.push(
    ...healthRoutes(ctx),
    ...jobRoutes(ctx),
    ...queueRoutes(ctx),
    ...quotaRoutes(ctx),
    ...tenantRoutes(ctx),
    ...deadLetterRoutes(ctx),
    ...flowRoutes(ctx),
    ...throttleRoutes(ctx),
    ...policyRoutes(ctx),
    ...backpressureRoutes(ctx),
    ...breakerRoutes(ctx),
    ...alertRoutes(ctx),
    ...metaRoutes(ctx, openapi),
    ...dashboardRoutes(),
  );
  return routes;
}

export function buildApi(ctx: ApiContext): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1_048_576, routerOptions: { maxParamLength: 1024 }, return503OnClosing: true });
  installErrorHandling(app, ctx.log);
  registerClusterMetrics(ctx);
  registerRoutes(app, apiRoutes(ctx), ctx.tokens, ctx.postgresReady, () => ctx.database.pool.query('SELECT 1'));
  // Loaded only when enabled: bull-board and its Fastify plugins are not needed otherwise.
  if (ctx.config.dashboard.bullBoard) (require('./bull-board') as typeof import('./bull-board')).mountBullBoard(app, ctx);
  return app;
}
