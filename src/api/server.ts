/**
 * Builds the fastify apps: the whole API (routes, auth, errors, metrics), or only health and metrics
 * (METRICS_PORT of a gate or observer). Listening is the caller's business.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { registerClusterMetrics } from './cluster-metrics';
import type { ApiContext } from './context';
import { clientErrorHandler, frameworkErrors, installErrorHandling } from './errors';
import { buildOpenApi } from './openapi';
import { registerRoutes, type RouteDef } from './route';
import { dashboardRoutes } from './routes/dashboard';
import { healthRoutes } from './routes/health';
import { jobRoutes } from './routes/jobs';
import { metaRoutes, metricsRoutes } from './routes/meta';
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

/** Fastify with every error it raises itself (router, body parser, Node's HTTP parser) in the TG_ERR body. */
function createApp(log: Logger): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: 1_048_576,
    routerOptions: { maxParamLength: 1024 },
    // Answered by installErrorHandling in the TG_ERR body, with Retry-After.
    return503OnClosing: false,
    frameworkErrors: frameworkErrors(log),
    clientErrorHandler,
  });
  // JSON only: a text/plain body is a 415, not a string handed to the body schema.
  app.removeContentTypeParser('text/plain');
  installErrorHandling(app, log);
  return app;
}

export function buildApi(ctx: ApiContext): FastifyInstance {
  const app = createApp(ctx.log);
  registerClusterMetrics(ctx);
  registerRoutes(app, apiRoutes(ctx), ctx.tokens, ctx.postgresReady, () => ctx.database.pool.query('SELECT 1'));
  // Loaded only when enabled: bull-board and its Fastify plugins are not needed otherwise.
  if (ctx.config.dashboard.bullBoard) (require('./bull-board') as typeof import('./bull-board')).mountBullBoard(app, ctx);
  return app;
}

/** `/healthz`, `/readyz` and `/metrics`, nothing else: what METRICS_PORT serves for a gate or observer. */
export function buildHealthApi(ctx: ApiContext): FastifyInstance {
  const app = createApp(ctx.log);
  registerClusterMetrics(ctx);
  registerRoutes(app, [...healthRoutes(ctx), ...metricsRoutes(ctx)], ctx.tokens, ctx.postgresReady);
  return app;
}
