/**
 * The observer role's step: the failure observer (execution events → releases and breaker outcomes),
 * the sync with Postgres (snapshots, restores after a loss), adaptive capacity, the breakers' outbox,
 * and the alert pipeline (detection, the relay into Postgres, delivery of notifications).
 */
import type { Redis } from 'ioredis';
import { AdaptiveCapacity } from '../governance/adaptive';
import type { BreakerService } from '../governance/breakers';
import { Definitions } from '../governance/definitions';
import { GovernanceSync } from '../governance/sync';
import { defaultQuota } from '../config/quotas';
import { AlertDetector } from '../notify/detector';
import { Deliverer } from '../notify/deliverer';
import { AlertRelay } from '../notify/relay';
import type { Target as NotificationTarget } from '../db/alerts';
import { adoptLiveJobs } from '../queues/adopt';
import { Observer } from '../queues/observer';
import type { Topology } from '../queues/topology';
import { createRedis } from '../redis/connection';
import type { Governance } from '../redis/governance';
import { markStarted, type Closer, type RoleContext } from './context';

export async function startObserverRole(
  ctx: RoleContext,
  redis: Redis,
  governance: Governance,
  topology: Topology,
  breakers: BreakerService,
  targets: NotificationTarget[],
  setDeliverer: (d: Deliverer) => void,
): Promise<{ observer: Observer; close: Closer }> {
  const { env, config, log, metrics, failpoints, keys, now, database } = ctx;
  const blockingRedis = createRedis(env, 'worker', log, 'observer-read');
  const obsLog = log.child({ component: 'observer' });
  const sync = new GovernanceSync(
    governance,
    database,
    new Definitions(database, governance, config, obsLog),
    ctx.downstreamNames,
    obsLog,
    defaultQuota(config),
    () => adoptLiveJobs(topology, governance, config),
    config.observer.syncIntervalMs,
    now,
  );
  const onRedisReset = () => (ctx.migrated() ? sync.tick() : Promise.resolve());
  const openBlocking = (label: string) => createRedis(env, 'worker', log, label);
  const observer = new Observer({ config, topology, governance, keys, redis, blockingRedis, openBlocking, log: obsLog, metrics, failpoints, onRedisReset, breakers });
  await observer.start();
  const adaptive = new AdaptiveCapacity(redis, governance, config.downstreams, obsLog, metrics, now);
  await adaptive.start();
  breakers.start();
  // Alerts: detection here (every observer; Redis decides each crossing once), the relay of alert
  // events into Postgres, and delivery of the notification outbox (src/notify/).
  const notifyLog = log.child({ component: 'notifier' });
  const notifierRedis = createRedis(env, 'worker', log, 'notifier');
  const deliverer = new Deliverer({ database, config, redis: notifierRedis, prefix: env.prefix, log: notifyLog, metrics });
  setDeliverer(deliverer);
  const relay = new AlertRelay({ redis, keys, database, targets, log: notifyLog, metrics, retentionDays: config.notifier.retentionDays, onQueued: () => deliverer.wake() });
  const detector = config.alerts.enabled ? new AlertDetector({ redis, keys, config, database, log: notifyLog, now, onEvents: () => void relay.tick() }) : undefined;
  detector?.start();
  markStarted(ctx, 'observer');
  // Counters sync with Postgres once migrations are in; until then there is no table to use.
  void ctx.migrating.then(() => {
    if (ctx.closing()) return;
    sync.start();
    relay.start();
    deliverer.start();
  });
  return {
    observer,
    close: async () => {
      await detector?.close();
      await relay.close();
      await deliverer.close();
      notifierRedis.disconnect();
      adaptive.close();
      breakers.close();
      await observer.close();
      blockingRedis.disconnect();
      if (ctx.migrated()) await sync.close();
    },
  };
}
