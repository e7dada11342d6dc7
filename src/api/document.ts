/**
 * The OpenAPI document without a running server: routes declared against an inert context (their
 * handlers are never called), so `npm run openapi` and the docs test need neither Redis nor Postgres.
 */
import { parseConfig } from '../config/file';
import { Metrics } from '../observability/metrics';
import type { ApiContext } from './context';
import { apiRoutes } from './server';
import { buildOpenApi } from './openapi';

const VERSION: string = require('../../package.json').version;

export function openApiDocument(): Record<string, unknown> {
  const inert = {
    config: parseConfig({ downstreams: [{ name: 'example', capacity: 1 }] }),
    tokens: [],
    metrics: new Metrics({ defaultMetrics: false }),
  } as unknown as ApiContext;
  return buildOpenApi(apiRoutes(inert), VERSION);
}
