/**
 * The HTTP step: the REST API and dashboard for the api role, or only `/healthz`, `/readyz` and
 * `/metrics` for the other roles, on a Redis connection of its own. Readiness is per role and says
 * what is missing: a gate needs Redis only (it admits under the definitions mirrored there, so a
 * Postgres outage must not hold back a rollout of gates); an observer or the API also needs Postgres
 * with its migrations, and governance state Redis lost restored by the observer's sync.
 */
import type { FastifyInstance } from 'fastify';
import type { CheckResult } from '../api/context';
import { buildApi, buildHealthApi } from '../api/server';
import { BreakerService } from '../governance/breakers';
import { Definitions } from '../governance/definitions';
import { pendingRestore } from '../governance/restoring';
import { Topology } from '../queues/topology';
import { createRedis } from '../redis/connection';
import { Governance } from '../redis/governance';
import type { Role } from '../runtime';
import { hasStarted, type Closer, type RoleContext } from './context';

/** Whether readiness waits for Postgres: the observer and the API work on it, a gate does not. */
export function needsPostgres(roles: readonly Role[]): boolean {
  return roles.includes('observer') || roles.includes('api');
}

export async function startHttp(ctx: RoleContext, port: number, roles: readonly Role[]): Promise<{ app: FastifyInstance; url: string; close: Closer }> {
  const asApi = roles.includes('api');
  const withPostgres = needsPostgres(roles);
  const { env, config, log, metrics, keys, now, database } = ctx;
  const apiRedis = createRedis(env, 'api', log, 'api');
  const apiTopology = new Topology(config, env.prefix, apiRedis, log);
  const apiGovernance = new Governance(apiRedis, keys, ctx.retentionMs, ctx.downstreamNames, now);
  // A gate or observer is ready once its loops run (after Redis answered and it restored what it must).
  const loops = (['gate', 'observer'] as const).filter((r) => roles.includes(r));
  const started = (): CheckResult =>
    Object.fromEntries(loops.map((r) => [r, hasStarted(ctx, r) ? { ok: true } : { ok: false, detail: `the ${r} is starting (it starts once Redis answers)` }]));
  const readiness = async (): Promise<CheckResult> => {
    const redisCheck = apiRedis.ping().then(
      () => ({ ok: true }),
      (err: Error) => ({ ok: false, detail: `REDIS_URL: ${err.message}` }),
    );
    if (!withPostgres) return { redis: await redisCheck, ...started() };
    const [r, p] = await Promise.all([
      redisCheck,
      database.pool.query('SELECT 1').then(
        () => (ctx.migrated() ? { ok: true } : { ok: false, detail: 'migrations not applied yet' }),
        (err: Error) => ({ ok: false, detail: `DATABASE_URL: ${err.message}` }),
      ),
    ]);
    // Redis lost governance state Postgres keeps (a flush, a replaced server): not ready until the
    // observer's sync has restored it, so nothing is served under missing quotas or counters.
    let g: { ok: boolean; detail?: string } = { ok: false, detail: 'not checked until Redis and Postgres answer' };
    if (r.ok && p.ok) {
      g = await pendingRestore(apiGovernance, database, ctx.downstreamNames, now()).then(
        (detail) => (detail ? { ok: false, detail } : { ok: true }),
        (err: Error) => ({ ok: false, detail: `could not check: ${err.message}` }),
      );
    }
    return { redis: r, postgres: p, governance: g, ...started() };
  };
  const apiLog = log.child({ component: 'api' });
  const app = (asApi ? buildApi : buildHealthApi)({
    config,
    tokens: env.apiTokens,
    topology: apiTopology,
    governance: apiGovernance,
    redis: apiRedis,
    database,
    definitions: new Definitions(database, apiGovernance, config, apiLog),
    breakers: new BreakerService({ governance: apiGovernance, config, database, log: apiLog, metrics, now }),
    metrics,
    log: apiLog,
    readiness,
    postgresReady: () => ctx.migrated(),
  });
  const url = await app.listen({ port, host: env.host });
  log.info({ url }, asApi ? 'API listening' : 'health and metrics listening');
  return {
    app,
    url,
    close: async () => {
      await app.close();
      await apiTopology.close();
      apiRedis.disconnect();
    },
  };
}
