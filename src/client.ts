/**
 * The producer entry, `tollgate/client` (dist/client.js): what a producer or an execution worker uses,
 * without the server. It loads bullmq, ioredis and zod and nothing else (no pg, drizzle-orm, fastify,
 * prom-client, pino: test/unit/client-entry.test.ts checks the module graph), so keep its imports that
 * way: config and Redis adapters only, never src/db, src/api, src/queues or src/observability.
 *
 * `checkBackpressure(tenantId, jobName)` tells a producer, before it adds a job, whether the job's
 * downstream and tenant are `ok`, should `slow-down`, or are shedding (`shed`), with a suggested
 * retry-after, reading the same state the gate uses (Redis), without a call to the API.
 *
 *   import { createBackpressureClient, waitForExecution } from 'tollgate/client';
 *   const bp = createBackpressureClient();            // REDIS_URL, TOLLGATE_PREFIX, TOLLGATE_CONFIG
 *   const { level, retryAfterMs } = await bp.check('acme', 'scan.image');
 *   if (level !== 'ok') await sleep(retryAfterMs ?? 1000);
 */
import { Cluster, Redis } from 'ioredis';
import { loadEnv } from './config/env';
import { loadConfigFile, type Config } from './config/file';
import { createRouter } from './core/classify';
import { tenantPressure, type Level } from './governance/backpressure';
import { Governance } from './redis/governance';
import { Keys } from './redis/keys';

export { waitForExecution, type WaitForExecutionOptions } from './wait';
export { ERRORS, TollgateError, type ErrorCode } from './errors';
export { execJobId, ingressIdOf } from './redis/keys';
export type { Level as BackpressureLevel } from './governance/backpressure';
export { parseConfig, type Config, type ConfigInput } from './config/file';

export interface BackpressureCheck {
  level: Level;
  downstream?: string;
  reason?: string;
  retryAfterMs?: number;
}

export interface BackpressureClient {
  check(tenantId: string, jobName: string, data?: Record<string, unknown>): Promise<BackpressureCheck>;
  close(): Promise<void>;
}

export function createBackpressureClient(opts: { redis?: Redis; redisUrl?: string; prefix?: string; config?: Config } = {}): BackpressureClient {
  const env = opts.redis && opts.prefix && opts.config ? undefined : loadEnv();
  const config = opts.config ?? loadConfigFile(env!.configPath);
  // REDIS_CLUSTER_NODES (when no client or URL is given): a cluster client, as tollgate's own.
  const clusterNodes = opts.redis === undefined && opts.redisUrl === undefined ? env?.redisClusterNodes : undefined;
  const redis =
    opts.redis ??
    (clusterNodes
      ? (new Cluster(clusterNodes, { scaleReads: 'master', redisOptions: { maxRetriesPerRequest: 2 } }) as unknown as Redis)
      : new Redis(opts.redisUrl ?? env!.redisUrl, { maxRetriesPerRequest: 2 }));
  const owned = opts.redis === undefined;
  const governance = new Governance(redis, new Keys(opts.prefix ?? env!.prefix), 0, config.downstreams.map((d) => d.name));
  const router = createRouter({ rules: config.routing.rules, dataField: config.routing.dataField, downstreams: config.downstreams.map((d) => d.name) });
  return {
    async check(tenantId, jobName, data = {}) {
      const routed = router.route(jobName, data);
      if ('code' in routed) return { level: 'ok', reason: 'no-route' };
      const d = config.downstreams.find((x) => x.name === routed.downstream)!;
      const p = await tenantPressure(governance, config, d, tenantId, jobName);
      return { level: p.level, downstream: p.downstream, ...(p.reason ? { reason: p.reason } : {}), ...(p.retryAfterMs !== undefined ? { retryAfterMs: p.retryAfterMs } : {}) };
    },
    async close() {
      if (owned) await redis.quit();
    },
  };
}

let shared: BackpressureClient | undefined;

/** One-call form with a shared client configured from the environment. */
export function checkBackpressure(tenantId: string, jobName: string, data?: Record<string, unknown>): Promise<BackpressureCheck> {
  shared ??= createBackpressureClient();
  return shared.check(tenantId, jobName, data);
}
