/**
 * Starts and stops a tollgate process with any mix of roles (gate, observer, api). Owns every client
 * (Redis, Postgres, BullMQ, HTTP) and closes them in one sequence.
 *
 * Start-up never fails on a missing Redis or Postgres: each is retried with backoff (logged with the
 * variable to fix), `/healthz` answers at once and `/readyz` says what is missing.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { checkClusterQueueNames, type Config } from './config/file';
import type { Env } from './config/env';
import { createDatabase } from './db/client';
import { FATAL_MIGRATION_ERRORS, runMigrations } from './db/migrate';
import { TollgateError } from './errors';
import { parseFailpoints } from './failpoints';
import { BreakerService } from './governance/breakers';
import { recordBreakerAlerts } from './notify/breaker-alerts';
import type { Deliverer } from './notify/deliverer';
import { notificationTargets } from './notify/targets';
import { createLogger, type Logger } from './observability/log';
import { Metrics } from './observability/metrics';
import { checkBullmqLayout } from './queues/bullmq-layout';
import type { Observer } from './queues/observer';
import { Topology } from './queues/topology';
import { createRedis } from './redis/connection';
import { Governance } from './redis/governance';
import { Keys } from './redis/keys';
import { startHttp } from './roles/api';
import type { Closer, RoleContext } from './roles/context';
import { startGateRole } from './roles/gate';
import { startObserverRole } from './roles/observer';

export type Role = 'gate' | 'observer' | 'api';

export interface StartOptions {
  roles: readonly Role[];
  env: Env;
  config: Config;
  log?: Logger;
  metrics?: Metrics;
  /** Port for the HTTP server; defaults to env.port for the api role, env.metricsPort otherwise. */
  port?: number;
  /** The governance clock (ms). Tests move it to cross quota windows; production leaves it. */
  now?: () => number;
}

export interface Tollgate {
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Listening address of the HTTP server, when one runs. */
  readonly url?: string;
  readonly app?: FastifyInstance;
  readonly observer?: Observer;
  /** Resolves once Redis answered and the gate / observer started. */
  readonly started: Promise<void>;
  /**
   * Resolves (never rejects) with a start-up error no retry can fix: the Postgres schema belongs to
   * another deployment (TG_ERR_PG_SCHEMA_OWNED) or connections do not work inside it. Postgres is then
   * left alone; the process entry exits 1 on it (src/process.ts).
   */
  readonly fatal: Promise<TollgateError>;
  close(): Promise<void>;
}

function backoffDelay(attempt: number): number {
  return Math.min(250 * 2 ** attempt, 10_000);
}

export async function startTollgate(opts: StartOptions): Promise<Tollgate> {
  const { env, config, roles } = opts;
  checkBullmqLayout();
  if (env.redisClusterNodes) checkClusterQueueNames(config);
  const log = opts.log ?? createLogger(env.logLevel, roles.join('+'));
  // Shutdown runs these phases in order: stop HTTP, finish in-flight gate work, stop the observer,
  // then close queues and connections.
  const phases: Record<'http' | 'gate' | 'observer' | 'queues' | 'connections', Closer[]> = { http: [], gate: [], observer: [], queues: [], connections: [] };
  let closing = false;
  let startDone = false;
  const stopping = new AbortController();

  const redis = createRedis(env, 'worker', log, 'main');
  const database = createDatabase(env.databaseUrl, log, { schema: env.pgSchema });
  phases.connections.push(
    () => redis.quit().catch(() => redis.disconnect()),
    () => database.close(),
  );
  const migrations = startMigrations(database, { schema: env.pgSchema, prefix: env.prefix }, log, () => closing, stopping.signal);
  const ctx: RoleContext = {
    env,
    config,
    log,
    metrics: opts.metrics ?? new Metrics(),
    failpoints: parseFailpoints(env.failpoints),
    keys: new Keys(env.prefix),
    now: opts.now ?? Date.now,
    downstreamNames: config.downstreams.map((d) => d.name),
    retentionMs: config.retention.decisionSeconds * 1000,
    database,
    migrated: migrations.done,
    migrating: migrations.applied,
    closing: () => closing,
  };

  let http: Awaited<ReturnType<typeof startHttp>> | undefined;
  const httpPort = opts.port ?? (roles.includes('api') ? env.port : env.metricsPort);
  if (httpPort !== undefined) {
    http = await startHttp(ctx, httpPort, roles);
    phases.http.push(http.close);
  }

  let observer: Observer | undefined;
  const started = (async () => {
    // With maxRetriesPerRequest null this waits for Redis however long it takes to appear.
    await redis.ping();
    if (closing) return;
    const { governance, topology, breakers, targets, setDeliverer } = openShared(ctx, redis, phases);
    if (roles.includes('gate')) phases.gate.push(await startGateRole(ctx, governance, topology, breakers));
    if (roles.includes('observer')) {
      const o = await startObserverRole(ctx, redis, governance, topology, breakers, targets, setDeliverer);
      observer = o.observer;
      phases.observer.push(o.close);
    }
  })().finally(() => {
    startDone = true;
  });
  started.catch((err) => {
    if (!closing) log.error({ err }, 'tollgate failed to start');
  });

  return {
    log,
    metrics: ctx.metrics,
    url: http?.url,
    app: http?.app,
    get observer() {
      return observer;
    },
    started,
    fatal: migrations.fatal,
    async close() {
      if (closing) return;
      closing = true;
      stopping.abort();
      // Still waiting for Redis to appear: abort the wait instead of hanging.
      if (!startDone) redis.disconnect();
      await started.catch(() => undefined);
      for (const phase of Object.values(phases)) {
        for (const close of phase) {
          try {
            await close();
          } catch (err) {
            log.warn({ err: (err as Error).message }, 'error while closing');
          }
        }
      }
      await migrations.promise.catch(() => undefined);
    },
  };
}

/**
 * Postgres: migrate in the background until it works; nothing in the gate path waits for it. An error
 * no retry can fix (the schema is another deployment's) ends the attempts and resolves `fatal`;
 * `applied` then never resolves, so nothing starts using the schema.
 */
function startMigrations(
  database: RoleContext['database'],
  target: Parameters<typeof runMigrations>[2],
  log: Logger,
  closing: () => boolean,
  signal: AbortSignal,
): { promise: Promise<void>; applied: Promise<void>; fatal: Promise<TollgateError>; done: () => boolean } {
  let migrated = false;
  let reportFatal!: (err: TollgateError) => void;
  const fatal = new Promise<TollgateError>((resolve) => (reportFatal = resolve));
  const promise = (async () => {
    for (let attempt = 0; !closing(); attempt++) {
      try {
        await runMigrations(database.pool, log, target);
        migrated = true;
        return;
      } catch (err) {
        if (err instanceof TollgateError && FATAL_MIGRATION_ERRORS.has(err.code)) {
          log.fatal({ code: err.code, err: err.message, ...(err.details as object) }, 'tollgate cannot use its Postgres schema');
          reportFatal(err);
          return;
        }
        const wait = backoffDelay(attempt);
        log.warn({ err: (err as Error).message, retryInMs: wait }, 'Postgres not usable at DATABASE_URL; retrying');
        await sleep(wait, signal);
      }
    }
  })();
  const applied = promise.then(() => (migrated ? undefined : new Promise<void>(() => undefined)));
  return { promise, applied, fatal, done: () => migrated };
}

/**
 * What the gate and observer roles share once Redis answers: governance on the main connection, the
 * BullMQ queues on a connection of their own (ioredis copies a connection's scripts into every
 * auto-pipeline it makes, so tollgate's and BullMQ's script sets kept apart each copy less), and the
 * breaker service, whose transitions record breaker alerts in the same transaction when alerts are on.
 */
function openShared(ctx: RoleContext, redis: Redis, phases: Record<'queues' | 'connections', Closer[]>) {
  const { env, config, log, metrics, now } = ctx;
  const governance = new Governance(redis, ctx.keys, ctx.retentionMs, ctx.downstreamNames, now);
  const queueRedis = createRedis(env, 'worker', log, 'queues');
  const topology = new Topology(config, env.prefix, queueRedis, log);
  phases.queues.push(() => topology.close());
  phases.connections.push(() => queueRedis.quit().catch(() => queueRedis.disconnect()));
  const targets = notificationTargets(config);
  let deliverer: Deliverer | undefined;
  const breakerAlerts = config.alerts.enabled && config.alerts.breakers;
  const breakers = new BreakerService({
    governance,
    config,
    database: ctx.database,
    log: log.child({ component: 'breakers' }),
    metrics,
    now,
    ...(breakerAlerts
      ? {
          onTransitions: async (tx, transitions) => {
            const recorded = await recordBreakerAlerts(tx, transitions, targets);
            for (const r of recorded) metrics.alertEvents.inc({ kind: r.kind, event: r.type });
            // After the commit: the deliverer finds the rows then.
            if (recorded.some((r) => r.notifications > 0)) setTimeout(() => deliverer?.wake(), 20).unref();
          },
        }
      : {}),
  });
  return { governance, topology, breakers, targets, setDeliverer: (d: Deliverer) => (deliverer = d) };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}

export type { Redis };
