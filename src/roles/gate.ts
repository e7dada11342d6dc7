/**
 * The gate role's step: restores a lost breaker before anything is admitted, writes the config's
 * default quota, policies and execution queues where the scripts read them, and starts the scheduler
 * (admission from the waiting place) and the gate (intake), each on connections of its own.
 */
import { defaultQuota } from '../config/quotas';
import type { BreakerService } from '../governance/breakers';
import { Definitions } from '../governance/definitions';
import { MirrorGuard } from '../governance/mirror-guard';
import { Gate } from '../queues/gate';
import { Ingress } from '../queues/ingress';
import { Scheduler } from '../queues/scheduler';
import { Topology } from '../queues/topology';
import { createRedis } from '../redis/connection';
import { Governance } from '../redis/governance';
import { markStarted, type Closer, type RoleContext } from './context';

export async function startGateRole(ctx: RoleContext, governance: Governance, topology: Topology, breakers: BreakerService): Promise<Closer> {
  const { env, config, log, metrics, failpoints, keys, now, database } = ctx;
  // A breaker Redis lost is restored before anything is admitted (an open one stays open), if
  // Postgres answers soon; otherwise the observer restores it when Postgres is back.
  await Promise.race([breakers.restoreMissing().catch(() => []), new Promise((r) => setTimeout(r, 2000))]);
  await governance.mirror.writeDefaultQuota(defaultQuota(config));
  // The config's policies apply until an operator sets one at runtime (kept in Postgres and Redis).
  for (const d of config.downstreams) await governance.mirror.writePolicy(d.name, d.policy, 'config');
  await governance.mirror.writeExecQueues(Object.fromEntries(config.downstreams.map((d) => [d.name, d.queue])));
  // Its own connection for the blocking wait on the ingress marker (no auto-pipelining under a block).
  const blockingConnection = createRedis(env, 'worker', log, 'gate-wait');
  blockingConnection.options.enableAutoPipelining = false;
  // Claims and finishes on a connection of their own: on the decisions' one they would queue behind
  // other loops' intake calls (a client's commands run one after the other), and the reverse.
  const ingressRedis = createRedis(env, 'worker', log, 'gate-ingress');
  const ingress = new Ingress(ingressRedis, blockingConnection, topology.ingress, keys);
  const subscriber = createRedis(env, 'worker', log, 'gate-wake');
  const gateLog = log.child({ component: 'gate' });
  const mirror = new MirrorGuard(database, new Definitions(database, governance, config, gateLog), gateLog, () => ctx.migrated());
  mirror.start();
  // Once Postgres is in: learn its version and make sure Redis has the mirror (a fresh Redis has none).
  void ctx.migrating.then(async () => {
    await mirror.refresh();
    mirror.repair(false);
  });
  // The scheduler's admissions and execution adds have connections of their own: on the intake's they
  // would queue behind its batches (a client's commands run in order), and a slot that came back
  // would wait for them.
  const schedulerRedis = createRedis(env, 'worker', log, 'scheduler');
  const schedulerQueueRedis = createRedis(env, 'worker', log, 'scheduler-queues');
  const schedulerTopology = new Topology(config, env.prefix, schedulerQueueRedis, gateLog);
  const schedulerGovernance = new Governance(schedulerRedis, keys, ctx.retentionMs, ctx.downstreamNames, now);
  const scheduler = new Scheduler({ config, topology: schedulerTopology, governance: schedulerGovernance, subscriber, log: gateLog, metrics, failpoints, now });
  await scheduler.start();
  const gate = new Gate({ config, topology, governance, scheduler, ingress, log: gateLog, metrics, failpoints, now, mirror });
  gate.start();
  markStarted(ctx, 'gate');
  // Intake first (its in-flight jobs may still go to the waiting place), then the scheduler's rounds.
  return async () => {
    mirror.close();
    await gate.close();
    await scheduler.close();
    await schedulerTopology.close();
    schedulerRedis.disconnect();
    schedulerQueueRedis.disconnect();
    blockingConnection.disconnect();
    ingressRedis.disconnect();
    subscriber.disconnect();
  };
}
