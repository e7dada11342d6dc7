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
import { buildApi } from './api/server';
import type { CheckResult } from './api/context';
import type { Config } from './config/file';
import type { Env } from './config/env';
import { createDatabase } from './db/client';
import { runMigrations } from './db/migrate';
import { parseFailpoints } from './failpoints';
import { createLogger, type Logger } from './observability/log';
import { Metrics } from './observability/metrics';
import { Gate } from './queues/gate';
import { Ingress } from './queues/ingress';
import { checkBullmqLayout } from './queues/bullmq-layout';
import { Scheduler } from './queues/scheduler';
import { defaultQuota } from './config/quotas';
import { Observer } from './queues/observer';
import { Topology } from './queues/topology';
import { createRedis } from './redis/connection';
import { Governance } from './redis/governance';
import { Keys } from './redis/keys';
import { GovernanceSync } from './governance/sync';
import { adoptLiveJobs } from './governance/adopt';
import { AdaptiveCapacity } from './governance/adaptive';
import { BreakerService } from './governance/breakers';
import { Definitions } from './governance/definitions';
import { pendingRestore } from './governance/restoring';
import { MirrorGuard } from './governance/mirror-guard';
import { AlertDetector } from './notify/detector';
import { AlertRelay } from './notify/relay';
import { Deliverer } from './notify/deliverer';
import { notificationTargets } from './notify/targets';
import { recordBreakerAlerts } from './notify/breaker-alerts';

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
  close(): Promise<void>;
}

function backoffDelay(attempt: number): number {
  return Math.min(250 * 2 ** attempt, 10_000);
}

export async function startTollgate(opts: StartOptions): Promise<Tollgate> {
  const { env, config, roles } = opts;
  checkBullmqLayout();
  const log = opts.log ?? createLogger(env.logLevel, roles.join('+'));
  const metrics = opts.metrics ?? new Metrics();
  const failpoints = parseFailpoints(env.failpoints);
  const keys = new Keys(env.prefix);
  const now = opts.now ?? Date.now;
  const downstreamNames = config.downstreams.map((d) => d.name);
  const retentionMs = config.retention.decisionSeconds * 1000;
  // Shutdown runs these phases in order: stop HTTP, finish in-flight gate work, stop the observer,
  // then close queues and connections.
  type Closer = () => Promise<unknown> | unknown;
  const phases: Record<'http' | 'gate' | 'observer' | 'queues' | 'connections', Closer[]> = {
    http: [],
    gate: [],
    observer: [],
    queues: [],
    connections: [],
  };
  let closing = false;
  let startDone = false;
  const stopping = new AbortController();

  const redis = createRedis(env.redisUrl, 'worker', log, 'main');
  const database = createDatabase(env.databaseUrl, log);
  phases.connections.push(
    () => redis.quit().catch(() => redis.disconnect()),
    () => database.close(),
  );

  // Postgres: migrate in the background until it works; nothing in the gate path waits for it.
  let migrated = false;
  const migrating = (async () => {
    for (let attempt = 0; !closing; attempt++) {
      try {
        await runMigrations(database.pool, log);
        migrated = true;
        return;
      } catch (err) {
        const wait = backoffDelay(attempt);
        log.warn({ err: (err as Error).message, retryInMs: wait }, 'Postgres not usable at DATABASE_URL; retrying');
        await sleep(wait, stopping.signal);
      }
    }
  })();

  let app: FastifyInstance | undefined;
  let url: string | undefined;
  const httpPort = opts.port ?? (roles.includes('api') ? env.port : env.metricsPort);
  if (httpPort !== undefined) {
    const apiRedis = createRedis(env.redisUrl, 'api', log, 'api');
    const apiTopology = new Topology(config, env.prefix, apiRedis);
    const readiness = async (): Promise<CheckResult> => {
      const [r, p] = await Promise.all([
        apiRedis.ping().then(
          () => ({ ok: true }),
          (err: Error) => ({ ok: false, detail: `REDIS_URL: ${err.message}` }),
        ),
        database.pool.query('SELECT 1').then(
          () => (migrated ? { ok: true } : { ok: false, detail: 'migrations not applied yet' }),
          (err: Error) => ({ ok: false, detail: `DATABASE_URL: ${err.message}` }),
        ),
      ]);
      // Redis lost governance state Postgres keeps (a flush, a replaced server): not ready until the
      // observer's sync has restored it, so nothing is served under missing quotas or counters.
      let g: { ok: boolean; detail?: string } = { ok: false, detail: 'not checked until Redis and Postgres answer' };
      if (r.ok && p.ok) {
        g = await pendingRestore(apiGovernance, database, downstreamNames, now()).then(
          (detail) => (detail ? { ok: false, detail } : { ok: true }),
          (err: Error) => ({ ok: false, detail: `could not check: ${err.message}` }),
        );
      }
      return { redis: r, postgres: p, governance: g };
    };
    const apiGovernance = new Governance(apiRedis, keys, retentionMs, downstreamNames, now);
    const apiLog = log.child({ component: 'api' });
    app = buildApi({
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
      postgresReady: () => migrated,
    });
    phases.http.push(async () => {
      await app!.close();
      await apiTopology.close();
      apiRedis.disconnect();
    });
    url = await app.listen({ port: httpPort, host: env.host });
    log.info({ url }, roles.includes('api') ? 'API listening' : 'health and metrics listening');
  }

  let gate: Gate | undefined;
  let observer: Observer | undefined;
  const started = (async () => {
    // With maxRetriesPerRequest null this waits for Redis however long it takes to appear.
    await redis.ping();
    if (closing) return;
    const governance = new Governance(redis, keys, retentionMs, downstreamNames, now);
    // BullMQ's queues get a connection of their own: ioredis copies a connection's scripts into every
    // auto-pipeline it makes, so tollgate's and BullMQ's script sets kept apart each copy less.
    const queueRedis = createRedis(env.redisUrl, 'worker', log, 'queues');
    const topology = new Topology(config, env.prefix, queueRedis);
    phases.queues.push(() => topology.close());
    phases.connections.push(() => queueRedis.quit().catch(() => queueRedis.disconnect()));
    const targets = notificationTargets(config);
    let deliverer: Deliverer | undefined;
    const breakerAlerts = config.alerts.enabled && config.alerts.breakers;
    const breakers = new BreakerService({
      governance,
      config,
      database,
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
    if (roles.includes('gate')) {
      // A breaker Redis lost is restored before anything is admitted (an open one stays open), if
      // Postgres answers soon; otherwise the observer restores it when Postgres is back.
      await Promise.race([breakers.restoreMissing().catch(() => []), new Promise((r) => setTimeout(r, 2000))]);
      await governance.writeDefaultQuota(defaultQuota(config));
      // The config's policies apply until an operator sets one at runtime (kept in Postgres and Redis).
      for (const d of config.downstreams) await governance.writePolicy(d.name, d.policy, 'config');
      await governance.writeExecQueues(Object.fromEntries(config.downstreams.map((d) => [d.name, d.queue])));
      // Its own connection for the blocking wait on the ingress marker (no auto-pipelining under a block).
      const blockingConnection = createRedis(env.redisUrl, 'worker', log, 'gate-wait');
      blockingConnection.options.enableAutoPipelining = false;
      // Claims and finishes on a connection of their own: on the decisions' one they would queue behind
      // other loops' intake calls (a client's commands run one after the other), and the reverse.
      const ingressRedis = createRedis(env.redisUrl, 'worker', log, 'gate-ingress');
      const ingress = new Ingress(ingressRedis, blockingConnection, topology.ingress, keys);
      const subscriber = createRedis(env.redisUrl, 'worker', log, 'gate-wake');
      const gateLog = log.child({ component: 'gate' });
      const mirror = new MirrorGuard(database, new Definitions(database, governance, config, gateLog), gateLog, () => migrated);
      mirror.start();
      // Once Postgres is in: learn its version and make sure Redis has the mirror (a fresh Redis has none).
      void migrating.then(async () => {
        await mirror.refresh();
        mirror.repair(false);
      });
      // The scheduler's drains and execution adds have connections of their own: on the intake's they
      // would queue behind its batches (a client's commands run in order), and a slot that came back
      // would wait for them.
      const schedulerRedis = createRedis(env.redisUrl, 'worker', log, 'scheduler');
      const schedulerQueueRedis = createRedis(env.redisUrl, 'worker', log, 'scheduler-queues');
      const schedulerTopology = new Topology(config, env.prefix, schedulerQueueRedis);
      const schedulerGovernance = new Governance(schedulerRedis, keys, retentionMs, downstreamNames, now);
      const scheduler = new Scheduler({ config, topology: schedulerTopology, governance: schedulerGovernance, subscriber, log: gateLog, metrics, failpoints, now });
      await scheduler.start();
      gate = new Gate({ config, topology, governance, scheduler, ingress, log: gateLog, metrics, failpoints, now, mirror });
      gate.start();
      // Intake first (its in-flight jobs may still enqueue), then the scheduler's in-flight drains.
      phases.gate.push(async () => {
        mirror.close();
        await gate!.close();
        await scheduler.close();
        await schedulerTopology.close();
        schedulerRedis.disconnect();
        schedulerQueueRedis.disconnect();
        blockingConnection.disconnect();
        ingressRedis.disconnect();
        subscriber.disconnect();
      });
    }
    if (roles.includes('observer')) {
      const blockingRedis = createRedis(env.redisUrl, 'worker', log, 'observer-read');
      const obsLog = log.child({ component: 'observer' });
      const sync = new GovernanceSync(
        governance,
        database,
        new Definitions(database, governance, config, obsLog),
        downstreamNames,
        obsLog,
        defaultQuota(config),
        () => adoptLiveJobs(topology, governance, config),
        config.observer.syncIntervalMs,
        now,
      );
      const onRedisReset = () => (migrated ? sync.tick() : Promise.resolve());
      observer = new Observer({ config, topology, governance, keys, redis, blockingRedis, log: obsLog, metrics, failpoints, onRedisReset, breakers });
      await observer.start();
      const adaptive = new AdaptiveCapacity(redis, governance, config.downstreams, obsLog, metrics, now);
      await adaptive.start();
      breakers.start();
      // Alerts: detection here (every observer; Redis decides each crossing once), the relay of alert
      // events into Postgres, and delivery of the notification outbox (src/notify/).
      const notifyLog = log.child({ component: 'notifier' });
      const notifierRedis = createRedis(env.redisUrl, 'worker', log, 'notifier');
      deliverer = new Deliverer({ database, config, redis: notifierRedis, prefix: env.prefix, log: notifyLog, metrics });
      const relay = new AlertRelay({ redis, keys, database, targets, log: notifyLog, metrics, retentionDays: config.notifier.retentionDays, onQueued: () => deliverer?.wake() });
      const detector = config.alerts.enabled
        ? new AlertDetector({ redis, keys, config, database, log: notifyLog, now, onEvents: () => void relay.tick() })
        : undefined;
      detector?.start();
      // Counters sync with Postgres once migrations are in; until then there is no table to use.
      void migrating.then(() => {
        if (closing) return;
        sync.start();
        relay.start();
        deliverer!.start();
      });
      phases.observer.push(async () => {
        await detector?.close();
        await relay.close();
        await deliverer!.close();
        notifierRedis.disconnect();
        adaptive.close();
        breakers.close();
        await observer!.close();
        blockingRedis.disconnect();
        if (migrated) await sync.close();
      });
    }
  })().finally(() => {
    startDone = true;
  });
  started.catch((err) => {
    if (!closing) log.error({ err }, 'tollgate failed to start');
  });

  return {
    log,
    metrics,
    url,
    app,
    get observer() {
      return observer;
    },
    started,
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
      await migrating.catch(() => undefined);
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}

export type { Redis };
